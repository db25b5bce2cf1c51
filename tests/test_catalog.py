"""`genbench list`: read without importing the components, complete, one row per name, pipe-safe.

The registrations are read from source (:mod:`genbench.catalog`); these tests hold that reading
to the imported registry, and the command to what a user sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import genbench_command, write_distribution

from genbench import catalog, registry
from genbench.config import config_root, group_options
from genbench.registry import summary

HEAVY = ("torch", "torchvision", "diffusers", "timm")


def test_reading_the_source_finds_what_importing_registers():
    read = {(c.kind, c.name): c for c in catalog.builtin_components()}
    registry.load_builtins_and_plugins()
    live = {(e.kind, e.name): e for kind in registry.KINDS for e in registry.entries(kind)
            if e.source.startswith("genbench.")}
    assert set(read) == set(live)
    for key, entry in live.items():
        assert read[key].description == entry.description, key
        assert read[key].paper == entry.paper, key
        assert read[key].source == entry.source, key


def test_list_imports_no_heavy_module():
    script = ("import io, contextlib, sys\n"
              "from genbench.cli import main\n"
              "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
              "    status = main(['list'])\n"
              f"print(status, len(out.getvalue().splitlines()), "
              f"[m for m in {HEAVY!r} if m in sys.modules])\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    status, lines, heavy = proc.stdout.strip().split(" ", 2)
    assert status == "0" and int(lines) > 60
    assert heavy == "[]", f"`genbench list` imported {heavy}"


def _listed(run_cli, *args, env=None):
    proc = run_cli("list", *args, "--json", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_each_name_once_per_kind_with_the_component_it_builds(run_cli):
    rows = _listed(run_cli)
    keys = [(r["kind"], r["name"]) for r in rows]
    assert len(keys) == len(set(keys)), "a name listed twice"
    for group in catalog.COMPONENT_GROUPS:  # every preset and every bare component of the group
        names = {r["name"] for r in rows if r["kind"] == group}
        assert set(group_options(group)) <= names
    by_key = {(r["kind"], r["name"]): r for r in rows}
    assert by_key[("backbone", "ncsnpp_digits")]["component"] == "ncsnpp"  # from its defaults
    assert by_key[("dataset", "digits16")]["component"] == "digits"
    assert by_key[("latent", "kl")]["source"] == "genbench"  # no preset of that name
    assert by_key[("latent", "pixel")]["source"] == "registry/"  # the preset wins, as in compose
    assert {"fid", "kid", "precision_recall"} <= {r["name"] for r in rows if r["kind"] == "metric"}
    assert by_key[("train", "tiny")]["component"] == ""


def test_descriptions_are_whole_sentences(run_cli):
    rows = _listed(run_cli)
    ncsnpp = next(r for r in rows if r["kind"] == "backbone" and r["name"] == "ncsnpp")
    assert ncsnpp["description"].endswith("(Trinh and Hamagami 2024, Table 2).")
    for row in rows:
        text = row["description"]
        if row["source"] in ("registry/", "baselines/", "registry/grid/"):
            folder = ("baselines" if row["kind"] == "baseline" else f"registry/{row['kind']}")
            path = config_root().parent / folder / f"{row['name']}.yaml"
            head = [line[1:].strip() for line in path.read_text().splitlines()[:12]
                    if line.startswith("#") and not line.startswith("# @package")]
            assert text.endswith((".", "!", "?")) or text == " ".join(head), (row, head)
        assert not text.endswith((":", ",", ";", "(")), row


def test_summary_is_the_first_sentence():
    assert summary("DDPM (Ho et al. 2020, Algorithm 2) from an eps network trained with the\n"
                   "simple loss (Eq. 14): NFE = steps. steps < N respaces.") == (
        "DDPM (Ho et al. 2020, Algorithm 2) from an eps network trained with the simple loss "
        "(Eq. 14): NFE = steps.")
    assert summary("A net (see Sec. 4. of the paper). More.") == "A net (see Sec. 4. of the paper)."
    assert summary("First line\nsecond line, no end\n\nAnother paragraph.") == (
        "First line second line, no end")
    assert summary("Version 1.5 of it. Next.") == "Version 1.5 of it."


def test_a_closed_pipe_ends_quietly():
    """`genbench list | head -0`: the reader is gone before anything is written."""
    proc = subprocess.Popen([*genbench_command(), "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


def test_on_a_terminal_descriptions_wrap_and_stay_whole(monkeypatch):
    from genbench.cli import _list_table

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("shutil.get_terminal_size", lambda *a: os.terminal_size((100, 40)))
    rows = catalog.rows("eval")
    text = _list_table(rows)
    assert max(map(len, text.splitlines())) <= 100
    words = " ".join(text.split())
    for row in rows:
        assert " ".join(row.description.split()) in words


def test_a_plugin_is_read_without_importing_it_unless_it_must_be(run_cli, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    marker = tmp_path / "imported"
    # a plain decorated factory: read from source, never imported by `genbench list`
    write_distribution(site, "readplug", textwrap.dedent(f'''
        import pathlib
        from genbench.registry import register

        pathlib.Path({str(marker)!r}).write_text("imported")
        PAPER = "Someone et al. 2026"

        @register("sampler", "read_sampler", paper=PAPER)
        def read_sampler(steps: int = 2):
            """A sampler listed from its source. It is not run here."""
            raise NotImplementedError
        '''))
    # registrations made by a callable: the entry point has to be run to know them
    (site / "callplug.py").write_text(textwrap.dedent('''
        from genbench import registry

        def setup():
            for name in ("called_a", "called_b"):
                registry.register("latent", name, description=f"made by setup(): {name}")(
                    lambda: None)
        '''))
    info = site / "callplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: callplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[genbench.plugins]\ncallplug = callplug:setup\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    rows = {(r["kind"], r["name"]): r for r in _listed(run_cli, env=env)}
    read = rows[("sampler", "read_sampler")]
    assert read["source"] == "readplug" and read["paper"] == "Someone et al. 2026"
    assert read["description"] == "A sampler listed from its source."
    assert not marker.exists(), "the plugin was imported to list it"
    assert rows[("latent", "called_b")]["description"] == "made by setup(): called_b"


@pytest.mark.parametrize("args", [("backbone",), ("ncsn*",), ("grid",), ("metric", "k*")])
def test_kind_and_pattern_filter(run_cli, args):
    rows = _listed(run_cli, *args)
    assert rows
    if args[0] in catalog.known_kinds():
        assert {r["kind"] for r in rows} == {args[0]}
    pattern = args[-1] if "*" in args[-1] else None
    if pattern:
        assert all(r["name"].startswith(pattern.rstrip("*")) for r in rows)
