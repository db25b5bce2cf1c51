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
