"""The command line's argument parser: every subcommand's options and the converters of their values.

Apart from the commands (:mod:`multiticket.cli.commands`), so that parsing a command line imports
neither the launch package nor torch: the converters here are plain text checks.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

#: the parser's description: the first line of :mod:`multiticket.cli`'s docstring
DESCRIPTION = ("The ``multiticket`` command line: run, sweep, status, report, compare, tasks, transfer, instability, "
               "export.")

#: ``--min-sparsity``'s default, for its help only (the value is core.sparse's DEFAULT_MIN_SPARSITY,
#: whose torch import the parser does not pay; tests/test_sparse_export.py keeps the two equal)
MIN_SPARSITY_DEFAULT = 0.8

if TYPE_CHECKING:
    from multiticket.launch.backends import LaunchOptions


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="multiticket", description=DESCRIPTION)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_parser(sub)

    sweep = sub.add_parser("sweep", help="run every task x override combination of a sweep file")
    sweep.add_argument("sweep", help="sweep file (YAML: tasks, seeds, set, variants, grid; docs/scale.md)")
    sweep.add_argument("--out", help="parent of the run directories (default: the file's 'out', else runs)")
    _add_launch_args(sweep)

    status = sub.add_parser("status", help="done / running / failed / missing units of a run directory or a sweep")
    status.add_argument("target", help="a run directory, or a sweep file")
    status.add_argument("--out", help="where the sweep's runs are (default: the file's 'out', else runs)")
    status.add_argument("--json", action="store_true", help="print the counts as JSON")

    report = sub.add_parser("report", help="write report.html (plots embedded), plots/ and summary.csv into a run directory")
    report.add_argument("run_dir")
    report.add_argument("--metric", metavar="NAME",
                        help="the headline metric (default: the task's report.metric, else the primary metric), "
                             "e.g. f1_macro, eval_loss, test_accuracy")

    compare = sub.add_parser("compare", help="compare runs side by side (e.g. an RL and an NLP ticket search)")
    compare.add_argument("run_dirs", nargs="*", metavar="RUN_DIR")
    compare.add_argument("--label", action="append", default=[], metavar="NAME=RUN_DIR",
                         help="a run under a name of yours (repeatable; after the plain RUN_DIRs)")
    compare.add_argument("--out", help="output directory (default: <parent of the first run>/comparison)")

    sub.add_parser("tasks", help="list the shipped task files")

    transfer = sub.add_parser("transfer", help="train a run's tickets on another task (docs/transfer-and-stability.md)")
    transfer.add_argument("ticket_dir", help="the source run directory (<task>-<hash>) whose tickets travel")
    transfer.add_argument("--to", required=True, metavar="TASK", help="target task file or shipped task name")
    transfer.add_argument("--out", default="runs", help="parent of the transfer run directory (default: runs)")
    transfer.add_argument("--seeds", type=_seeds, help="source seeds to transfer (default: all finished)")
    transfer.add_argument("--levels", type=int, help="source levels 1..N to transfer (default: all finished)")
    transfer.add_argument("--controls", type=_names, help="default: transfer_mask + the source's random controls")
    transfer.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a target task key")
    _add_launch_args(transfer)

    inst = sub.add_parser("instability", help="linear mode connectivity of a run's units (error barrier)")
    inst.add_argument("run_dir")
    inst.add_argument("--levels", type=_seeds, help="comma-separated levels (0 = dense; default: all)")
    inst.add_argument("--controls", type=_names, help="comma-separated, e.g. ticket,random_reinit (default: ticket)")
    inst.add_argument("--seeds", type=_seeds, help="comma-separated seeds (default: the run's)")
    inst.add_argument("--points", type=int, default=11, help="points on the path, ends included (default 11)")
    inst.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    inst.add_argument("--quiet", action="store_true", help="no progress display")
    _add_trust_arg(inst)
    inst.add_argument("--trust-code", action="store_true",
                      help="import the user code the run directory's config names (a torch module, rl.imports, "
                           "module:EnvId); refused without it, since importing runs that code")
    _add_export_parser(sub)
    return parser


def _add_export_parser(sub: Any) -> None:
    export = sub.add_parser("export", help="write a finished unit as a model its library loads (SB3: a zip; "
                                           "--compact: the pruned neurons removed; --sparse: CSR weights)")
    export.add_argument("run_dir")
    export.add_argument("--seed", type=int, required=True)
    export.add_argument("--level", type=int, required=True)
    export.add_argument("--control", default="ticket", help="default: ticket")
    export.add_argument("--compact", action="store_true",
                        help="remove the neurons the mask prunes whole (prune.structure: neurons) from the network")
    export.add_argument("--sparse", action="store_true",
                        help="the pruned Linear/LSTM weights as CSR (or BSR) safetensors, loaded with "
                             "multiticket.core.sparse.load_sparse into the same architecture (any domain; "
                             "pays only for large layers at high sparsity, docs/results.md)")
    export.add_argument("--min-sparsity", type=float,  # default: core.sparse's, whose torch import waits
                        help=f"with --sparse: a layer goes sparse from this fraction of zeros (default: "
                             f"{MIN_SPARSITY_DEFAULT}, multiticket.core.sparse.DEFAULT_MIN_SPARSITY); "
                             "less sparse layers stay dense")
    export.add_argument("--out", help="the file to write (default: <run>-seed<S>-<control>-level<L>[-compact|-sparse]"
                                      ".zip|.safetensors here)")
    export.add_argument("--trust-code", action="store_true",
                        help="import the user code the run directory's config names; refused without it")


def _add_run_parser(sub: Any) -> None:
    run = sub.add_parser("run", help="run, resume or extend a ticket search")
    run.add_argument("task", help="task file, the name of a shipped task (see 'multiticket tasks'), or a run "
                                  "directory (or its config.yaml) to resume or extend from its own configuration")
    run.add_argument("--out", help="parent of the run directory (default: runs; a run directory's own parent)")
    run.add_argument("--seeds", type=_seeds, help="comma-separated seeds, e.g. 0,1,2")
    run.add_argument("--levels", type=int, help="number of pruning levels")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a task key, e.g. --set rl.env=Acrobot-v1 (repeatable)")
    run.add_argument("--trust-code", action="store_true",
                     help="a run directory: import the user code its config.yaml names (a torch module, rl.imports), "
                          "from your paths, never from the run directory; refused without it")
    _add_launch_args(run)


def _workers(text: str) -> int | str:
    """``auto`` (multiticket.launch.resources) or a count >= 1; parsed here without importing
    the launch package, which imports torch (argparse converts the default on every parse)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a count >= 1 or 'auto', got '{text}'")
    return count


def _names(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _add_trust_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-checkpoints", action="store_true",
                   help="read state files of older multiticket versions (state.pt, core.pt, final_state.pt) even "
                        "if they hold objects outside the allowlist: unpickling them can run code, so only for "
                        "run directories you trust (README: When things go wrong)")


def _add_launch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    _add_trust_arg(p)
    g = p.add_argument_group("where units run (docs/scale.md)")
    g.add_argument("--backend", choices=("local", "ray", "slurm"), default="local",
                   help="local process pool (default), a Ray cluster, or Slurm via submitit")
    g.add_argument("--workers", type=_workers, default="auto",
                   help="units at once: local pool size (1 = in this process), CPUs of a local Ray "
                        "instance, Slurm array parallelism; default 'auto': the CPUs this process may "
                        "use, capped by memory (1 trains in this process; docs/scale.md)")
    g.add_argument("--granularity", choices=("unit", "chain"),
                   help="one job per unit (default; slurm: per seed chain) or per seed chain")
    g.add_argument("--threads", type=int,
                   help="torch threads per worker (default 1; in-process runs keep torch's default)")
    g.add_argument("--address", help="ray: address of an existing cluster (default: start a local one)")
    g.add_argument("--cpus-per-unit", type=float, default=1.0, help="ray/slurm: CPUs per unit")
    g.add_argument("--gpus-per-unit", type=float, default=0.0, help="ray/slurm: GPUs per unit")
    g.add_argument("--slurm-partition")
    g.add_argument("--slurm-time", type=int, default=240, help="minutes per job; a timed-out job requeues")
    g.add_argument("--slurm-mem-gb", type=float)
    g.add_argument("--slurm-folder", help="submitit logs (default: OUT/.submitit; must be shared)")
    g.add_argument("--slurm-cluster", choices=("slurm", "local", "debug"), default="slurm",
                   help="'local'/'debug' run the submitit jobs on this machine (testing without Slurm)")


def launch_options(args: argparse.Namespace) -> LaunchOptions:
    from multiticket.launch.backends import LaunchOptions

    return LaunchOptions(
        backend=args.backend, workers=args.workers, granularity=args.granularity, device=args.device,
        threads=args.threads or 1, in_process_threads=args.threads, address=args.address,
        cpus_per_unit=args.cpus_per_unit, gpus_per_unit=args.gpus_per_unit, slurm_cluster=args.slurm_cluster,
        slurm_partition=args.slurm_partition,
        slurm_time=args.slurm_time, slurm_mem_gb=args.slurm_mem_gb, slurm_folder=args.slurm_folder,
        command=getattr(args, "command_line", None),
    )
