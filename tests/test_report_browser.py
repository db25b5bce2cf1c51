"""The report page in a real browser: Debian's chromium, headless, offline.

The test writes a report from fixture records (two feature extractors, a failed cell, a cell run
from a baseline whose config carries the paper's numbers), injects a probe into a copy of the
page, and reads back what the browser built with ``--dump-dom``: script errors (window.onerror,
unhandled rejections, console.error) and the points plotly actually drew in every figure.
Nothing is installed here; without chromium (``apt-get install -y chromium``) the test skips.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_report import DIGITS, INCEPTION, write_baselines, write_mixed_results

from genbench.report import load_records, paper_points, report_figures, write_report
from genbench.report.html import MAIN_FIGURE_ID
from genbench.report.paper import same_dataset

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (apt-get install -y chromium); "
    "the headless-browser check of the report page needs it",
)

# Runs before any other script of the page: collects every script error.
ERROR_CATCHER = """<script>
window.__genbenchErrors = [];
window.addEventListener('error', e => window.__genbenchErrors.push('error: ' + e.message));
window.addEventListener('unhandledrejection',
  e => window.__genbenchErrors.push('rejection: ' + String(e.reason)));
(function () {
  const original = console.error;
  console.error = function () {
    window.__genbenchErrors.push('console: ' + Array.from(arguments).join(' '));
    return original.apply(console, arguments);
  };
})();
</script>"""
# Runs after load: what each plotly figure holds and drew, written into the DOM as JSON.
PROBE = """<script>
window.addEventListener('load', () => setTimeout(() => {
  const figures = Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => {
    const groups = gd.querySelectorAll('.scatterlayer .trace');
    return {id: gd.id, meta: gd.layout.meta, traces: gd._fullData.map((t, i) => ({
      name: t.name, role: t.meta && t.meta.role, length: t._length,
      drawn: groups[i] ? groups[i].querySelectorAll('path.point').length : -1}))};
  });
  const images = Array.from(document.querySelectorAll('img'))
    .map(img => ({data: img.src.startsWith('data:'), width: img.naturalWidth}));
  const probe = document.createElement('pre');
  probe.id = 'genbench-probe';
  probe.textContent = JSON.stringify({errors: window.__genbenchErrors,
    plotly: typeof Plotly, figures: figures, images: images});
  document.body.appendChild(probe);
}, 200));
</script>"""


def _probe_page(page: Path, copy: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert text.count("<head>") == 1 and text.count("</body>") == 1
    text = text.replace("<head>", "<head>" + ERROR_CATCHER, 1).replace("</body>", PROBE + "</body>")
    copy.write_text(text, encoding="utf-8")


def _chromium_dom(page: Path, profile: Path) -> str:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        "--virtual-time-budget=10000", "--dump-dom", page.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _probe(dom: str) -> dict[str, Any]:
    found = re.search(r'<pre id="genbench-probe">(.*?)</pre>', dom, re.S)
    assert found, "the probe script did not run: " + dom[-500:]
    return json.loads(html.unescape(found.group(1)))


def _expected_points(df: pd.DataFrame, paper: pd.DataFrame, meta: dict) -> tuple[int, int]:
    """(ok cells with an FID, paper points) for the main figure's extractor and dataset."""
    ok = df[(df["status"] == "ok") & pd.to_numeric(df["fid"], errors="coerce").notna()]
    measured = ok[(ok["fid_extractor"] == meta["extractor"]) & (ok["dataset"] == meta["dataset"])]
    reported = [
        p for _, p in paper.iterrows()
        if p["extractor"] == meta["extractor"]
        and same_dataset(p["dataset"], p["resolution"], meta["dataset"], meta["resolution"])
    ]
    return len(measured), len(reported)


def test_report_page_loads_without_errors_and_draws_every_point(tmp_path: Path) -> None:
    results = write_mixed_results(tmp_path / "results")
    baselines = write_baselines(tmp_path / "baselines")
    df = load_records([results])
    paper = paper_points(df, baselines)
    written = write_report(df, tmp_path / "report" / "report.html", baselines_dir=baselines)
    probed = tmp_path / "report" / "probed.html"
    _probe_page(written["html"], probed)

    result = _probe(_chromium_dom(probed, tmp_path / "chromium-profile"))

    assert result["errors"] == []
    assert result["plotly"] == "object"  # the inlined plotly.js ran, offline
    figures = {figure["id"]: figure for figure in result["figures"]}
    assert len(figures) == len(report_figures(df, paper))
    main = figures[MAIN_FIGURE_ID]
    assert main["meta"]["kind"] == "fid_vs_time"
    assert (main["meta"]["extractor"], main["meta"]["dataset"]) == (INCEPTION, "cifar10")
    measured, reported = _expected_points(df, paper, main["meta"])
    assert (measured, reported) == (3, 2)  # the baseline run's paper block is the same point
    drawn = {role: sum(t["drawn"] for t in main["traces"] if t["role"] == role)
             for role in ("measured", "paper")}
    assert drawn == {"measured": measured, "paper": reported}
    assert sum(t["length"] for t in main["traces"] if t["role"] in ("measured", "paper")) == (
        measured + reported)
    for figure in figures.values():  # a published FID never lands on a digits-classifier axis
        if figure["meta"]["extractor"] == DIGITS:
            assert not any(t["role"] == "paper" for t in figure["traces"])
    grids = [image for image in result["images"] if image["data"]]
    assert len(grids) == 6 and all(image["width"] > 0 for image in grids)  # data URIs decode


# ------------------------------------------------------------------- as a researcher sees it
PHOTO = "image_folder-classifier"
# Runs after load: the legend, ticks, hover and customdata of each figure, where each panel sits,
# how wide each table is against the page, and what a click on the main figure's first point shows.
VIEW_PROBE = """<script>
window.addEventListener('load', () => setTimeout(() => { try {
  const page = document.documentElement.clientWidth;
  const figures = Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
    id: gd.id, meta: gd.layout.meta, collapsed: !!gd.closest('details:not([open])'),
    ticks: Array.from(gd.querySelectorAll('.xtick text')).map(t => t.textContent),
    logx: gd._fullLayout.xaxis.type === 'log',
    legend: Array.from(gd.querySelectorAll('.legend .traces')).map(t => t.textContent),
    traces: gd.data.map(t => ({role: t.meta && t.meta.role, name: t.name,
      color: t.marker && t.marker.color, hover: t.hovertext || [],
      ids: (t.customdata || []).map(c => c[0])}))}));
  const tables = Array.from(document.querySelectorAll('table'))
    .map(t => ({right: t.getBoundingClientRect().right, width: t.scrollWidth,
                head: t.querySelector('tr').textContent.slice(0, 60),
                scrolls: !!t.closest('div.scroll')}));
  const pageWidth = document.scrollingElement.scrollWidth;
  const grids = Array.from(document.querySelectorAll('.grids figure')).map(f => ({
    id: f.id, caption: f.querySelector('figcaption').textContent,
    src: f.querySelector('img').src.slice(0, 80)}));
  const main = document.getElementById('genbench-figure-0');
  const first = main.data.find(t => t.meta && t.meta.role === 'measured');
  main.emit('plotly_click', {points: [{customdata: first.customdata[0]}]});
  const viewer = document.getElementById('sample-viewer');
  const shown = viewer.querySelector('img');
  const probe = document.createElement('pre');
  probe.id = 'genbench-probe';
  probe.textContent = JSON.stringify({errors: window.__genbenchErrors, page: page,
    pageWidth: pageWidth,
    figures: figures, tables: tables, grids: grids, text: document.body.innerText,
    click: {id: first.customdata[0][0], hidden: viewer.hidden, shown: viewer.dataset.shown,
            src: shown ? shown.src.slice(0, 80) : null}});
  document.body.appendChild(probe);
  } catch (e) {
    const probe = document.createElement('pre');
    probe.id = 'genbench-probe';
    probe.textContent = JSON.stringify({errors: ['probe: ' + e.message + ' ' + e.stack]});
    document.body.appendChild(probe);
  }
}, 200));
</script>"""


def write_photo_results(root: Path) -> Path:
    """An image-folder grid as a new user makes one: sampler ddgan/ddim x latent pixel/wavelet
    on 32x32 photographs, and a fifth cell timed at another batch size on a loaded machine."""
    import numpy as np
    from PIL import Image
    from test_report import _record, _write

    cells = [("pixel", "ddgan", 4, 478.0, 0.34), ("wavelet", "ddgan", 4, 478.5, 0.107),
             ("pixel", "ddim", 50, 364.8, 5.08), ("wavelet", "ddim", 50, 362.6, 1.36),
             ("pixel", "ddgan", 2, 478.3, 0.093)]
    rng = np.random.default_rng(0)
    for i, (latent, sampler, steps, fid, time_s) in enumerate(cells):
        cell = f"image_folder-{latent}-ncsnpp_tiny-{sampler}-s{steps}-{i:08x}"
        record = _record(cell, fid=fid, extractor=PHOTO, time_s=time_s, experiment="photos")
        record["config"] |= {"dataset": {"name": "image_folder", "resolution": 32},
                             "latent": {"name": latent}, "backbone": {"name": "ncsnpp_tiny"},
                             "sampler": {"name": sampler, "steps": steps}}
        record["metrics"] |= {"nfe": steps, "fid_ci": [fid - 0.2, fid + 0.3],
                              "peak_memory_mb": 0.2067 + i}
        record["timing"] |= {"threads": 1, "cpu_count": 2, "load_1m_before": 0.5,
                             "load_1m_after": 0.6, "q25_s": time_s * 0.98,
                             "q75_s": time_s * 1.02}
        if i == 4:  # timed at another batch size, with the machine busy
            record["timing"] |= {"batch_size": 10, "load_1m_before": 3.1}
        folder = _write(root, record).parent
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            folder / "samples.png")
    return root


def _chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        "--virtual-time-budget=10000", "--hide-scrollbars", *extra, page.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _number(text: str) -> float:
    return float(text.replace("\u2212", "-"))


def test_image_folder_report_reads_as_a_researcher_needs(tmp_path: Path) -> None:
    """The report of an image-folder grid at 1400 px, in headless chromium: what the issue
    found wrong (published panels of unmeasured datasets in view, one colour for every family,
    log ticks that read "5" for 0.5, 113-line hovers, tables wider than the page, hashed names,
    grids unconnected to the points, incomparable timings on one axis) is asserted on the DOM,
    and a screenshot is taken (kept under $GENBENCH_SCREENSHOTS when set, to be looked at)."""
    import os

    from PIL import Image

    results = write_photo_results(tmp_path / "results")
    baselines = write_baselines(tmp_path / "baselines")
    written = write_report(load_records([results]), tmp_path / "report" / "report.html",
                           baselines_dir=baselines)
    page = written["html"].read_text(encoding="utf-8")
    probed = tmp_path / "report" / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + ERROR_CATCHER, 1)
                      .replace("</body>", VIEW_PROBE + "</body>"), encoding="utf-8")
    dom = _chromium(probed, tmp_path / "profile", "--window-size=1400,3000", "--dump-dom").stdout
    view = _probe(dom)

    assert view["errors"] == []
    figures = view["figures"]
    visible = [f for f in figures if not f["collapsed"]]
    # only the measured dataset's panel is in view; the papers' CIFAR-10 and CelebA-HQ panels
    # are behind one collapsed section
    assert visible and all(f["meta"]["dataset"] == "image_folder" for f in visible)
    assert {f["meta"]["dataset"] for f in figures if f["collapsed"]} == {"cifar10",
                                                                          "celebahq256"}
    assert page.count("<details") == 1
    for figure in visible:
        measured = [t for t in figure["traces"] if t["role"] == "measured"]
        # four families (sampler x latent), each its own legend entry and colour or symbol
        assert len(measured) == 4, [t["name"] for t in measured]
        assert len({t["name"] for t in measured}) == 4
        assert len({t["color"] for t in measured}) == 2  # colour by sampler
        assert sum(entry.startswith("sampler=") for entry in figure["legend"]) == 4
        if figure["logx"]:  # every tick reads as the number it stands at, in order
            values = [_number(t) for t in figure["ticks"]]
            assert len(values) >= 2 and values == sorted(values) and len(set(values)) == len(
                values), figure["ticks"]
        for trace in measured:
            for hover in trace["hover"]:
                assert hover.count("<br>") <= 9 and "backbone.name" not in hover
                assert "/result.json" in hover
    main = next(f for f in figures if f["id"] == MAIN_FIGURE_ID)
    assert main["meta"]["kind"] == "fid_vs_time" and main["meta"]["timing_flagged"] == 1
    assert "0.5" in main["ticks"] and "5" in main["ticks"] and "2" in main["ticks"]
    # every point opens its own grid; the grid is captioned by its short name and metrics
    grid_ids = {g["id"] for g in view["grids"]}
    point_ids = {i for f in visible for t in f["traces"] for i in t["ids"]}
    assert len(grid_ids) == 5 and point_ids == grid_ids
    assert view["click"]["hidden"] is False and view["click"]["shown"] == view["click"]["id"]
    assert view["click"]["src"] == next(g["src"] for g in view["grids"]
                                        if g["id"] == view["click"]["id"])
    captions = " ".join(g["caption"] for g in view["grids"])
    assert "pixel ddgan s4" in captions and "FID 478" in captions and "00000001" not in \
        captions.replace("cell 00000001", "")
    # no table wider than the page; rows named by what they are; memory in sensible units;
    # the incomparable timing flagged in the table
    # (the summary of every column scrolls in its own box; the page itself never does)
    assert view["pageWidth"] <= view["page"]
    wide = [t for t in view["tables"] if not t["scrolls"]
            and (t["right"] > view["page"] or t["width"] > view["page"])]
    assert not wide, (view["page"], wide)
    assert sum(t["scrolls"] for t in view["tables"]) == 1
    text = view["text"]
    assert "pixel ddgan s4" in text and "memory [MB]" in text and "0.0002" not in text
    assert "batch 10 (most: 100)" in text and "taken under load" in text
    assert "REFERENCE.md" not in page and text.count("shared by every recipe") == 1

    shot = tmp_path / "report.png"
    _chromium(written["html"], tmp_path / "profile-shot", "--window-size=1400,2400",
              f"--screenshot={shot}")
    with Image.open(shot) as image:
        assert image.size == (1400, 2400)
        assert len(set(image.convert("L").resize((70, 120)).getdata())) > 20  # not blank
    keep = os.environ.get("GENBENCH_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "image_folder_report.png")
