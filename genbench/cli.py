"""``genbench``: run | list | profile | eval | report | weights.

Hydra composes the configuration here, at the edge (:mod:`genbench.config`); everything below
takes plain dicts. ``genbench run`` composes one cell and calls the task function
(:func:`genbench.harness.task.run_task`); ``--grid`` and ``-m`` are Hydra multiruns
(:mod:`genbench.harness.grid`); ``--cfg`` is Hydra's. Bad input ends with exit status 2 and one
line naming the problem and the fix, without a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path

from genbench.errors import UserError

EXIT_USER_ERROR = 2


# --------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    if args.cfg is not None:
        return _show_config(args)
    if args.grid is not None or args.multirun:
        from genbench.harness.grid import cmd_grid, select_grid

        if args.multirun:  # Hydra's flag: exactly the product of the overrides
            return cmd_grid(None, args.overrides, overwrite=args.overwrite)
        return cmd_grid(*select_grid(args.grid, args.overrides), overwrite=args.overwrite)
    from genbench.config import compose_plain
    from genbench.harness.cell import paths
    from genbench.harness.task import run_task
    from genbench.report.experiment import summary_text, write_experiment_report

    _one_configuration(args.overrides, "run")
    cfg = compose_plain(args.overrides)
    experiment_dir, cell_dir, _ = paths(cfg)
    record = run_task(cfg, overwrite=args.overwrite)
    from genbench.distributed import current

    if not current().is_main:  # torchrun/srun: rank 0 writes the report and says where
        return 0
    if record.get("_skipped"):
        print(f"genbench: already recorded (pass --overwrite to run again): {cell_dir}",
              file=sys.stderr)
    report = None
    if cfg.get("report", True):
        try:
            report = write_experiment_report([experiment_dir], experiment_dir / "report.html")
        except KeyboardInterrupt as exc:
            exc.genbench_resume = (f"the record is complete ({cell_dir}); the report was not "
                                   f"written: `genbench report {experiment_dir} -o "
                                   f"{experiment_dir / 'report.html'}` writes it")
            raise
    print(summary_text([record]))
    print(f"\nrecord:  {cell_dir / 'result.json'}")
    print(f"samples: {cell_dir / 'samples.png'}")
    if report:
        print(f"report:  {report['html']}")
    return 0


def _show_config(args: argparse.Namespace) -> int:
    """``genbench run --cfg job|hydra|all [overrides]``: Hydra's own ``--cfg``, nothing runs."""
    from genbench.config import compose, run_hydra
    from genbench.harness.task import CellTask

    if args.grid is not None or args.multirun:
        raise UserError("--cfg shows one job's configuration; leave out --grid and -m")
    _one_configuration(args.overrides, "run --cfg")
    compose(args.overrides)  # bad input: one line and exit status 2, as for a run
    argv = ["--cfg", args.cfg, *(["--resolve"] if args.resolve else [])]
    argv += ["--package", args.package] if args.package else []
    run_hydra(CellTask(), [*argv, *args.overrides])
    return 0


# --------------------------------------------------------------------------- list


LIST_HEADER = ("kind", "name", "component", "from", "description")


def _list_table(rows: list) -> str:
    """``genbench list``'s table: every description whole; wrapped to the terminal's width on a
    terminal, one line per row in a pipe (for grep, cut, head)."""
    import shutil
    import textwrap

    cells = [LIST_HEADER, *((r.kind, r.name, r.component or "-", r.source, r.description)
                            for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    indent = sum(widths) + 2 * 4
    room = shutil.get_terminal_size().columns - indent if sys.stdout.isatty() else 0
    lines = []
    for cell in cells:
        lead = "  ".join(c.ljust(w) for c, w in zip(cell, widths)) + "  "
        text = cell[4]
        wrapped = (textwrap.wrap(text, room, break_long_words=False, break_on_hyphens=False)
                   if room >= 30 and len(text) > room else [text])
        lines.append((lead + (wrapped[0] if wrapped else "")).rstrip())
        lines += [" " * indent + more for more in wrapped[1:]]
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    """``genbench list [KIND] [PATTERN] [--json]``: what ``kind=name`` selects, read without
    importing the components (:mod:`genbench.catalog`)."""
    from genbench import catalog

    kind, pattern = args.kind, args.pattern
    known = catalog.known_kinds()
    if kind and kind not in known:
        if pattern is None and any(ch in kind for ch in "*?["):
            kind, pattern = None, kind  # `genbench list 'uvit*'`
        else:
            raise UserError(f"unknown kind {kind!r}; kinds: {', '.join(known)}")
    rows = catalog.rows(kind)
    if pattern:
        import fnmatch

        rows = [r for r in rows if fnmatch.fnmatch(r.name, pattern)]
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=1))
        return 0
    print(_list_table(rows))
    return 0


# --------------------------------------------------------------------------- profile


def cmd_profile(args: argparse.Namespace) -> int:
    """``genbench profile [overrides] [--json] [--time]``: rounded for people, every digit in
    ``--json``; the steps that take long are said on stderr as they start."""
    from genbench.config import compose_plain
    from genbench.harness.profile import profile
    from genbench.schema import validate

    _one_configuration(args.overrides, "profile")
    cfg = compose_plain(args.overrides)
    validate(cfg)
    result = profile(cfg, time_it=args.time, say=lambda line: print(
        f"genbench: profile: {line}", file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        print(profile_text(result))
    return 0


def profile_text(result: dict) -> str:
    """``genbench profile``'s table: counts in full with thousands separators, measured and
    derived quantities to 3 significant digits, the timing summarised in one line."""
    from genbench.report.experiment import significant

    def shape(dims: list) -> str:
        return "x".join(str(d) for d in dims)

    r = result
    rows = [
        ("backbone", str(r["backbone"])),
        ("latent", f"{r['latent']}: {shape(r['image_shape'])} image -> "
                   f"{shape(r['latent_shape'])} latent"),
        ("sampler", f"{r['sampler']} ({r['objective']} objective)"),
        ("NFE", f"{r['nfe']:,}"),
        ("parameters", f"{r['params']:,} ({significant(r['params'] / 1e6)} M): denoiser "
                       f"{r['params_denoiser']:,}, decoder {r['params_decoder']:,}"),
        ("GMACs/forward", f"denoiser {significant(r['gmacs_denoiser'])}, decoder "
                          f"{significant(r['gmacs_decoder'])}"),
        ("GMACs/sample", f"{significant(r['gmacs_per_sample'])} (NFE x denoiser + decoder; "
                         f"{significant(r['gflops_per_sample'])} GFLOPs)"),
        ("peak memory", f"{significant(r['peak_memory_mb'])} MB drawing one sample "
                        f"({r['peak_memory_method']})"),
        ("device", str(r["device"])),
    ]
    timing = r.get("timing")
    if timing:
        rows.append((f"s/batch({timing['batch_size']})",
                     f"{significant(timing['median_s'])} s median, IQR "
                     f"{significant(timing['iqr_s'])} s, over {timing['trials']} trials after "
                     f"{timing['warmup']} warm-ups ({timing['method']})"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _one_configuration(overrides: list[str], command: str) -> None:
    """A comma list or range() sweeps: one configuration per element, a grid. ``genbench run``
    and ``genbench profile`` take one configuration, so say how to run the grid instead of
    reading ``sampler=ddgan,lddgan`` as one (unknown) sampler."""
    from genbench.harness.grid import sweeps

    swept = sweeps(overrides)
    if swept:
        what = ("run them as a grid: genbench run --grid " + " ".join(overrides)
                if command == "run" else
                f"{command} takes one at a time, e.g. {swept[0].split('=')[0]}="
                f"{_first_choice(swept[0])}")
        raise UserError(f"{' '.join(swept)} sweep{'s' if len(swept) == 1 else ''} over several "
                        f"configurations; {what}")


def _first_choice(override: str) -> str:
    from genbench.harness.grid import expand

    return expand(None, [override])[0][0].split("=", 1)[1]


# --------------------------------------------------------------------------- eval


def cmd_eval(args: argparse.Namespace) -> int:
    """``genbench eval SAMPLES [REFERENCE] [overrides] [--json]``: score given images
    (:mod:`genbench.harness.score`) and record them like a cell."""
    from genbench.harness.record import RESULT, SAMPLES, dumps
    from genbench.harness.score import run_eval
    from genbench.report.experiment import summary_text, write_experiment_report

    record, cell_dir, skipped = run_eval([args.samples, *args.rest], overwrite=args.overwrite)
    if skipped:
        print(f"genbench: already recorded (pass --overwrite to score again): {cell_dir}",
              file=sys.stderr)
    report = None
    if record.get("config", {}).get("report", True):
        report = write_experiment_report([cell_dir.parent], cell_dir.parent / "report.html")
    if args.json:  # the metrics alone on stdout, as the record holds them
        print(json.dumps(json.loads(dumps(record))["metrics"]))
        return 0
    print(summary_text([record]))
    print(f"\nrecord:  {cell_dir / RESULT}")
    print(f"samples: {cell_dir / SAMPLES}")
    if report:
        print(f"report:  {report['html']}")
    return 0


# --------------------------------------------------------------------------- report


def cmd_time(args: argparse.Namespace) -> int:
    """``genbench time EXPERIMENT [RESULTS_DIR]``: time the experiment's ok cells again in this
    process, round-robin, and write the new timings into their records
    (:mod:`genbench.harness.retime`)."""
    from genbench.harness.retime import retime, retime_text

    rows = retime(args.experiment, args.results_dir, device=args.device, warmup=args.warmup,
                  trials=args.trials)
    print(retime_text(rows))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from genbench.report.experiment import write_experiment_report

    inputs = [Path(p) for p in (args.results or ["results"])]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise UserError(f"no such results folder or file: {', '.join(missing)}")
    out = Path(args.output)
    if out.is_dir():
        raise UserError(f"-o {out} is a folder; pass the report's file name, e.g. "
                        f"-o {out / 'report.html'}")
    if out.parent.exists() and not out.parent.is_dir():
        raise UserError(f"-o {out}: {out.parent} is a file, not a folder")
    written = write_experiment_report(inputs, out, include_paper=not args.no_paper,
                                      published_elsewhere=not args.measured_datasets_only)
    if written is None:
        raise UserError(f"no result.json records under {', '.join(map(str, inputs))}; "
                        f"run `genbench run` first")
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


# --------------------------------------------------------------------------- weights


def cmd_weights(args: argparse.Namespace) -> int:
    """``genbench weights export inception PATH``: the Inception weights genbench uses, as a
    torch-fidelity state dict, for running torch-fidelity offline."""
    from genbench.metrics.features import export_inception_weights

    info = export_inception_weights(args.path)
    print(f"wrote {info['path']}: torch-fidelity FeatureExtractorInceptionV3 state dict, "
          f"SHA-256 {info['sha256']}")
    print(f"from  {info['from']} ({info['source']}, SHA-256 {info['from_sha256']})")
    print("torch-fidelity, offline:  torch_fidelity.calculate_metrics(input1=..., input2=..., "
          f"fid=True, feature_extractor_weights_path='{info['path']}')")
    print(f"genbench, this file:      genbench run eval.inception_weights={info['path']} "
          f"eval.inception_sha256={info['sha256']}")
    if info["logits_are_nan"]:
        print("note: its fc layer (Inception Score logits) is NaN: the packaged NVlabs network "
              "ends at the 2048-d pool features; use the file for FID, KID and precision/recall, "
              "not for the Inception Score")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """``genbench import FILE -o OUT.safetensors``: convert a released official checkpoint
    (DDGAN/WaveDiff/LDDGAN ``netG_*.pth``, U-ViT ``*.pth``, an LDM autoencoder ``.ckpt``) to
    genbench's safetensors, printing its SHA-256 and the configuration it implies."""
    from genbench.harness.released import import_file

    if not str(args.output).endswith(".safetensors"):
        raise UserError(f"-o must name a .safetensors file, got {args.output}")
    report = import_file(args.file, args.output,
                         Path(args.cache_dir).expanduser() if args.cache_dir else None)
    print(f"sha256: {report['sha256']}")
    print(f"format: {report['format']} ({report['role']}, {report['family']})")
    implied = ", ".join(f"{k}={v}" for k, v in report["implied"].items() if v is not None)
    print(f"implies: {implied}")
    if report["dropped"]:
        print(f"dropped: {report['dropped']} training-loss tensors (loss.*)")
    if report["role"] == "generator":
        fits = report["presets"] or ["none of the registered presets"]
        print("fits: " + "; ".join(fits))
        print(f"use: genbench run checkpoint={report['output']} backbone=...")
    else:
        print(f"use: genbench run latent=kl_f2 latent.checkpoint={report['output']} "
              f"(the latent.* settings above; tanh_out and scale_factor are not in the file)")
    print(f"wrote {report['output']}")
    return 0


# --------------------------------------------------------------------------- main

# File-system failures that are the machine's state, not a bug: said in one line, exit status 2.
_FILE_SYSTEM_ERRORS = {
    errno.ENOSPC: "no space left on the device; free some space (or pass results_dir=/ "
                  "cache_dir= on another disk) and run the same command again",
    errno.EDQUOT: "disk quota exceeded; free some space and run the same command again",
    errno.EROFS: "the file system is read-only; pass results_dir=FOLDER (and cache_dir=) on a "
                 "writable one",
    errno.EACCES: "permission denied; pass results_dir=FOLDER (and cache_dir=) that you can "
                  "write to",
    errno.EPERM: "operation not permitted; pass results_dir=FOLDER (and cache_dir=) that you can "
                 "write to",
}


def _full_disk(exc: BaseException) -> bool:
    """A full disk reported by a writer that does not raise OSError: torch.save's
    ``PytorchStreamWriter failed writing file ...: file write failed`` and safetensors'
    ``IoError(Os { code: 28, kind: StorageFull ... })``."""
    text = str(exc)
    return any(mark in text for mark in ("No space left on device", "StorageFull",
                                         "file write failed"))


def file_system_error(exc: OSError) -> str | None:
    """One line for a full disk, a read-only file system or a permission error (None for other
    errors, which are bugs and keep their traceback). The atomic writers of
    :mod:`genbench._io` have removed their temporaries by the time this is reached."""
    hint = _FILE_SYSTEM_ERRORS.get(exc.errno)
    if hint is None:
        return None
    where = f" writing {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or type(exc).__name__}{where}: {hint}"



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genbench", description="Benchmark the quality/speed trade-off of image generators.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one benchmark cell (default: the embedded digits DDGAN)")
    run.add_argument("overrides", nargs="*", help="Hydra overrides: group=option, key=value")
    run.add_argument("--overwrite", action="store_true", help="recompute an existing record")
    run.add_argument("--grid", nargs="?", const="default", metavar="NAME",
                     help="run a grid of cells (Hydra multirun): the named grid in registry/grid/"
                          " (default: 'default'), or the product of the comma lists given")
    run.add_argument("-m", "--multirun", action="store_true",
                     help="Hydra's multirun: one cell per element of the product of the comma"
                          " lists (a grid without the default grid)")
    run.add_argument("--cfg", choices=("job", "hydra", "all"),
                     help="print the composed configuration (Hydra's --cfg) and run nothing")
    run.add_argument("--resolve", action="store_true", help="with --cfg: resolve interpolations")
    run.add_argument("-p", "--package", help="with --cfg: print only this package (key)")
    run.set_defaults(func=cmd_run)
    lst = sub.add_parser("list", help="list registered components, presets and baselines")
    lst.add_argument("kind", nargs="?", help="dataset|backbone|latent|sampler|metric|baseline|...")
    lst.add_argument("pattern", nargs="?", help="wildcard on names, e.g. 'ncsnpp*'")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_list)
    prof = sub.add_parser("profile", help="cost of a configuration without training")
    prof.add_argument("overrides", nargs="*")
    prof.add_argument("--json", action="store_true", help="print one JSON object")
    prof.add_argument("--time", action="store_true", help="also time a batch (eval.time_*)")
    prof.set_defaults(func=cmd_profile)
    ev = sub.add_parser("eval", help="score given images (a folder, an .npz, dataset=NAME) "
                                     "against a reference and record them")
    ev.add_argument("samples", metavar="SAMPLES",
                    help="a folder of images, an .npz of uint8 images (ADM's arr_0) or "
                         "dataset=NAME")
    ev.add_argument("rest", nargs="*", metavar="[REFERENCE] [overrides]",
                    help="REFERENCE as SAMPLES (default: the configured dataset), then Hydra "
                         "overrides of dataset, eval and where to write (experiment=, ...)")
    ev.add_argument("--json", action="store_true",
                    help="print the record's metrics as one JSON object, nothing else on stdout")
    ev.add_argument("--overwrite", action="store_true", help="score again an existing record")
    ev.set_defaults(func=cmd_eval)
    rep = sub.add_parser("report", help="trade-off report (HTML + tables) from result records")
    rep.add_argument("results", nargs="*", help="results folders or result.json files")
    rep.add_argument("-o", "--output", default="report.html")
    rep.add_argument("--no-paper", action="store_true",
                     help="leave out the published numbers of baselines/ and records")
    rep.add_argument("--measured-datasets-only", action="store_true",
                     help="leave out the panels of published numbers on datasets no record "
                          "measured (by default they are in one collapsed section)")
    rep.set_defaults(func=cmd_report)
    tim = sub.add_parser("time", help="time all ok cells of an experiment again, together "
                                      "(round-robin, one process), and update their records")
    tim.add_argument("experiment", help="the experiment's name (its folder in RESULTS_DIR)")
    tim.add_argument("results_dir", nargs="?", default="results", metavar="RESULTS_DIR",
                     help="the results folder (default: results)")
    tim.add_argument("--device", help="where to time (default: the cells' device setting)")
    tim.add_argument("--warmup", type=int, help="untimed runs per cell (default: the cells' "
                                                "eval.time_warmup)")
    tim.add_argument("--trials", type=int, help="timed runs per cell (default: the cells' "
                                                "eval.time_trials)")
    tim.set_defaults(func=cmd_time)
    wts = sub.add_parser("weights", help="the metric networks' weights: export them")
    wts.add_argument("action", choices=("export",))
    wts.add_argument("network", choices=("inception",),
                     help="inception: the FID Inception genbench uses, as torch-fidelity's "
                          "state dict")
    wts.add_argument("path", help="file to write, e.g. inception-fidelity.pth")
    wts.set_defaults(func=cmd_weights)
    imp = sub.add_parser("import", help="convert a released official checkpoint (netG_*.pth, "
                                        "U-ViT .pth, LDM autoencoder .ckpt) to safetensors")
    imp.add_argument("file", help="the file as downloaded; read without running anything in it")
    imp.add_argument("-o", "--output", required=True, help="OUT.safetensors to write")
    imp.add_argument("--cache-dir", help="keep the conversion in CACHE_DIR/released/ too")
    imp.set_defaults(func=cmd_import)
    parser.commands = sub.choices  # type: ignore[attr-defined]  # name -> its parser
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, flags anywhere among the overrides (``genbench profile
    backbone=uvit_tiny --json eval=tiny``): each command's arguments are parsed with argparse's
    ``parse_intermixed_args``, which the parser with the sub-commands does not support."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = parser.commands  # type: ignore[attr-defined]
    if argv and argv[0] in commands:
        args = commands[argv[0]].parse_intermixed_args(argv[1:])
        args.command = argv[0]
        return args
    return parser.parse_args(argv)  # -h, no command, an unknown one: argparse says it


def main(argv: list[str] | None = None) -> int:
    """``genbench``: the exit status (0 done, 1 some grid cells failed, 2 bad input, 130
    interrupted). Output piped into a reader that stops early (``genbench list | head``) ends
    quietly, as the Python documentation's note on SIGPIPE (module :mod:`signal`) advises: the
    rest of stdout goes to ``os.devnull`` and the exit status is 1, without a traceback.
    First of all, before anything imports torch, the OpenMP thread setup of
    :func:`genbench.process.setup_threads` (waiting workers sleep instead of spinning)."""
    from genbench.process import setup_threads

    setup_threads()
    args = parse_args(argv)
    try:
        status = _run(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's flush at exit has nowhere to fail
        return 1


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        raise
    except UserError as exc:
        print(f"genbench: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:
        message = file_system_error(exc)
        if message is None:
            raise
        print(f"genbench: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:  # noqa: BLE001 - torch.save/safetensors wrap a full disk
        if not _full_disk(exc):
            raise
        print(f"genbench: error: {type(exc).__name__} while writing: "
              f"{_FILE_SYSTEM_ERRORS[errno.ENOSPC]}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:
        print(f"genbench: interrupted; {_after_interrupt(args, exc)}", file=sys.stderr)
        return 130


def _after_interrupt(args: argparse.Namespace, exc: BaseException) -> str:
    """What running the same command again will do: a cell says it
    (:func:`genbench.harness.cell.run_cell` attaches ``genbench_resume``); else by command."""
    hint = getattr(exc, "genbench_resume", None)
    if args.command == "run" and (args.grid is not None or args.multirun):
        return ((f"{hint}; " if hint else "") + "the cells recorded so far are kept; running the "
                "same command again runs only the others (each resumes from its training "
                "checkpoint, if it wrote one)")
    if hint:
        return str(hint)
    if args.command == "run" and args.cfg is None:
        return "nothing was written yet; running the same command again starts from the beginning"
    return "nothing to resume; run the command again"


if __name__ == "__main__":
    sys.exit(main())
