"""`msr <command> [overrides]`: one Hydra app per command.

Start-up stays light: this module imports Hydra and the config schemas only. Torch and the
rest load inside the command, so `--help`, `--cfg job` and config errors answer at once.
Config mistakes are caught here, before Hydra makes a run folder: the overrides are composed
and validated once, and any error becomes one line on stderr with exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

from msr.conf_dir import CONF_DIR
from msr.distributed import launched
from msr.errors import UserError
from msr.run_overrides import inherit_data, inherit_model, resume_overrides, resume_sweep, sweep_jobs
from msr.runs import claim_folder

COMMANDS = {
    "train": "supervised training from scratch on a task (input -> target)",
    "pretrain": "next-token language modelling on a corpus (or a task's inputs without answers)",
    "finetune": "supervised training that starts from a pretrained run (freezing, discriminative LRs, LoRA)",
    "augment": "write an augmented copy of a data set (rewrites, pseudo-labels, adversarial edits) with provenance",
    "evaluate": "score a run's checkpoint on a split: accuracy by reasoning steps, errors, BLEU",
    "generate": "decode from a run's checkpoint for given prompts",
    "data": "summarise the composed data set without training; --export writes it as JSONL",
    "reproduce": "rerun a run from its saved config and compare every metric with the original",
    "report": "compare runs and sweeps: mean ± std over seeds, paired tests, CSV/Markdown tables and plots",
    "compress": "prune and int8-quantize a run's model into a new run folder that evaluate and generate read",
}
FLAGS = {"data": {"--export": "export=true"}}  # a command's own flags, as the overrides they mean
TEXT_KEYS = ("prompt", "data.template")
EXAMPLES = {
    "train": ["model=gru optimizer.lr=1e-3",
              "-m model=lstm,gru optimizer.lr=1e-3,3e-3   one run folder per job",
              "data=listops data.train.max_steps=4 data.test.max_steps=8"],
    "pretrain": ["+experiment=shakespeare_char_cpu   nanoGPT's CPU Shakespeare run",
                 "data=arith model.max_len=256   the task's inputs, without answers"],
    "finetune": ["init=outputs/pretrain/DATE/TIME data=arith data.train.size=1000",
                 "init=RUN finetune.freeze=lower:2 finetune.lr_scale.layer_decay=0.5",
                 "init=RUN finetune.lora.rank=8 finetune.lora.target_modules=[qkv,proj]   LoRA through peft"],
    "augment": ["data=arith data.train.size=500 augment.copies=2   every op that applies to arith",
                "data=chain augment.ops=[rename_entities,perturb_numbers:2]   drawn 1:2",
                "data=arith augment.teacher=RUN augment.pseudo_labels=5000 augment.confidence=0.95",
                "data=arith augment.split=test augment.keep_original=false augment.copies=0 "
                "augment.teacher=RUN augment.adversarial=20   an adversarial test set"],
    "data": ["data=kinship data.test.max_steps=8",
             "data=scan_simple paths.data=../shared/data --export   also write the splits as JSONL"],
    "evaluate": ["run=outputs/train/DATE/TIME data.test.max_steps=8   the run's data, longer test steps",
                 "run=RUN decode.strategy=beam decode.beam_size=5",
                 "run=RUN decode.strategy=sample decode.self_consistency=9   majority vote of 9 samples",
                 "run=[RUN_A,RUN_B]   an ensemble"],
    "compress": ["run=RUN compress.quantize=int8   dynamic int8 Linear/LSTM/GRU layers (CPU)",
                 "run=RUN compress.prune=0.5 compress.finetune_steps=300   50% magnitude pruning, then recover",
                 "run=RUN compress.prune=0.5 compress.prune_scope=layer compress.quantize=int8"],
    "generate": ["run=RUN prompt='3 + 4 * 2 ='",
                 "run=RUN prompts_file=prompts.txt decode.strategy=sample decode.num_return_sequences=3"],
}

def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {about}" for name, about in COMMANDS.items()]
    return (
        "usage: msr <command> [group=option] [key=value ...] [-m] [--cfg job] [--help]\n\n"
        "Commands:\n" + "\n".join(lines) + "\n\n"
        "`msr <command> --help` shows the command's config groups and every key.\n"
    )


def fail(message: str, code: int = 2) -> None:
    sys.stderr.write(f"msr: error: {message}\n")
    sys.exit(code)


class PipeOutput:
    """stdout whose reader may leave early (`msr evaluate run=R | head -1`). From then on the output
    goes to /dev/null, as Python's docs advise for command-line tools, so that the run goes on to
    write its predictions and record itself completed instead of dying half-recorded."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self.to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self.to_devnull()

    def to_devnull(self) -> None:
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.stream.fileno())  # the text still buffered is flushed there, quietly
        os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def main(argv: list[str] | None = None) -> None:
    stdout = sys.stdout
    sys.stdout = PipeOutput(stdout) if stdout is not None else stdout
    try:
        dispatch(argv)
    finally:
        if stdout is not None:
            sys.stdout.flush()  # here, not at exit, where a closed pipe would print "Exception ignored"
        sys.stdout = stdout


def dispatch(argv: list[str] | None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        return
    if argv[0] in ("-V", "--version"):
        from msr import __version__

        print(f"msr {__version__}")
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        import difflib

        # git's wording: the mistake, where the list is, and the likely intent, not the whole usage
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f"The most similar command is {close[0]}\n" if close else ""
        sys.stderr.write(f"msr: error: {command!r} is not a msr command. See 'msr --help'.\n{hint}")
        sys.exit(2)
    if command in ("reproduce", "report"):  # not Hydra apps: they read run folders
        if command == "reproduce":
            from msr.reproduce import reproduce as run
        else:
            from msr.report.cli import main as run
        try:
            sys.exit(run(rest))
        except UserError as err:
            fail(str(err))
    rest = [quote_text(FLAGS.get(command, {}).get(arg, arg)) for arg in rest]
    try:
        if command == "evaluate":
            rest = inherit_data(sweep_jobs(rest))
        if command == "compress":  # scored on (and fine-tuned with) the run's own data, as evaluate
            rest = inherit_data(rest)
        if command == "finetune":
            rest = inherit_model(rest)
        multirun = "-m" in rest or "--multirun" in rest
        if any(a.startswith("resume=") for a in rest):
            if multirun and command in ("train", "pretrain", "finetune", "evaluate"):
                rest = resume_sweep(command, rest)
            elif command in ("train", "pretrain", "finetune"):
                rest = resume_overrides(command, rest)
    except UserError as err:
        fail(str(err))

    from hydra._internal.utils import get_args_parser

    from msr import config
    from msr.overrides import check_added_keys, check_overrides

    config.register(command)
    args = get_args_parser().parse_args(rest)
    # A job that will run is composed and validated here first, so that a bad value is refused
    # before Hydra makes a run folder. --cfg and --info only compose: Hydra's own composition
    # errors are enough there, and composing once keeps them quick.
    runs_a_job = not (args.hydra_help or args.cfg or args.info or args.shell_completion)
    own_search_path = args.config_dir or args.config_path or args.config_name
    try:
        if args.multirun and (args.cfg or args.info):
            raise UserError("-m cannot go with --cfg or --info, which show one job's config; drop -m")
        if args.help:
            sys.stdout.write(command_help(command, args.overrides))
            return
        sweep_dir, checked = None, None
        if runs_a_job and not own_search_path:
            check_launcher(args.overrides)
            checked = check_overrides(CONF_DIR, command, args.overrides, args.multirun)
            workers = distributed_settings(checked.jobs, args.multirun)
            if workers is not None and not launched():  # start the workers, each running this command
                from msr.launch import launch_workers

                sys.exit(launch_workers([command, *argv[1:]], workers))
            if workers is not None:  # a worker: rank 0 (on whichever machine) places the run, the others take its folder
                from msr.launch import join_run

                placed = join_run(workers, lambda: claim_folder(command, args.overrides, False)
                                  or [o for o in args.overrides if o.lstrip("+").startswith("hydra.run.dir=")])
            else:
                placed = claim_folder(command, args.overrides, args.multirun)
            rest = [*rest, *placed]
            if args.multirun:  # where its jobs' manifest will be, for the summary at the end
                value = next(o.partition("=")[2] for o in [*args.overrides, *placed]
                             if o.lstrip("+").startswith("hydra.sweep.dir="))
                sweep_dir = Path(value) if "${" not in value else None
        elif args.cfg == "job" and not (own_search_path or args.package or args.resolve):
            # the same config Hydra would print, composed once: it is checked for unknown keys too
            from omegaconf import OmegaConf

            from msr.overrides import compose_config

            sys.stdout.write(OmegaConf.to_yaml(compose_config(CONF_DIR, command, args.overrides)))
            return
        elif args.cfg and not own_search_path:
            check_added_keys(CONF_DIR, command, args.overrides)
        run_hydra(command, rest, sweep_dir, checked)
    except UserError as err:
        fail(str(err))


def quote_text(arg: str) -> str:
    """Free-text values (`prompt=7 * 3 =`, `data.template=Q: {input} A:`) as Hydra quoted
    strings, so that any characters pass its override grammar without the user quoting twice."""
    key, equals, value = arg.partition("=")
    if key.lstrip("+") not in TEXT_KEYS or not equals or value[:1] in ("'", '"'):
        return arg
    return key + "='" + value.replace("'", "\\'") + "'"


def command_help(command: str, overrides: list[str]) -> str:
    """Hydra's --help lists config groups by composing each one (seconds); conf/ says the same at once."""
    from omegaconf import OmegaConf

    from msr.overrides import compose_config

    composed = compose_config(CONF_DIR, command, overrides)
    groups = []
    for group in sorted(p for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra"):
        # presets (+experiment=NAME) set training keys, so they belong to commands that train
        if group.name not in composed and not (group.name == "experiment" and "trainer" in composed):
            continue
        options = ", ".join(sorted(f.stem for f in group.glob("*.yaml")))
        add = "+" if group.name == "experiment" else ""  # presets are added, not swapped: +experiment=NAME
        groups.append(f"  {add}{group.name}: {options}")
    config = OmegaConf.to_yaml(composed)
    return (
        f"msr {command}: {COMMANDS[command]}\n\n"
        f"usage: msr {command} [group=option ...] [key=value ...] [-m] [--cfg job] [--info]\n\n"
        "Config groups (choose with group=option):\n" + "\n".join(groups) + "\n\n"
        "Config (override any key with key=value):\n" + config + "\n"
        "Examples:\n" + "".join(f"  msr {command} {example}\n" for example in EXAMPLES[command]) +
        f"  msr {command} --cfg job   print the composed config\n"
        f"Runs go to outputs/{command}/<date>/<time>/; Hydra's own options: msr {command} --hydra-help\n"
    )


def distributed_settings(jobs: list, multirun: bool):
    """The `distributed` settings of a data-parallel run (several workers, from the config or
    from torchrun), else None."""
    settings = getattr(jobs[0], "distributed", None) if jobs else None
    if settings is None or (settings.workers == 1 and not launched()):
        return None
    if multirun:
        raise UserError(f"-m runs a sweep's jobs in one process each: distributed.nproc_per_node="
                        f"{settings.nproc_per_node} cannot go with it; start each data-parallel run on its own")
    return settings


def check_launcher(overrides: list[str]) -> None:
    """A launcher whose plugin is missing, or one told to run no job, before any job starts."""
    from msr.sweeps import LAUNCHER_PACKAGES

    for override in overrides:
        key, _, value = override.lstrip("+").partition("=")
        if key == "hydra/launcher" and value in LAUNCHER_PACKAGES:
            import importlib.util

            module = "hydra_plugins." + LAUNCHER_PACKAGES[value].replace("-", "_")
            if importlib.util.find_spec("hydra_plugins") is None or importlib.util.find_spec(module) is None:
                raise UserError(f"hydra/launcher={value} needs the {LAUNCHER_PACKAGES[value]} package: "
                                f"pip install {LAUNCHER_PACKAGES[value]}")
        if key == "hydra.launcher.n_jobs" and value.strip() == "0":
            raise UserError("hydra.launcher.n_jobs=0 would run no job: give a number of parallel jobs, "
                            "or -1 for one per core")


def run_hydra(command: str, rest: list[str], sweep_dir: Path | None = None, checked=None) -> None:
    """Run the Hydra app; its composition errors are raised to us (HYDRA_FULL_ERROR) as UserError.
    `checked` (msr.overrides.Checked), when the jobs were composed already, answers Hydra's
    get_mode, which would compose the config once more only to read hydra.mode (a third of a
    tiny run's start-up)."""
    import os

    import hydra
    from hydra._internal.hydra import Hydra
    from hydra.errors import ConfigCompositionException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    from msr.overrides import one_line

    def task(cfg) -> None:
        from msr.commands import run_command

        run_command(command, cfg)

    app = hydra.main(version_base=None, config_path=str(CONF_DIR), config_name=command)(task)
    sys.argv = [f"msr-{command}", *rest]
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    get_mode = Hydra.get_mode
    if checked is not None:
        Hydra.get_mode = lambda self, config_name, overrides: checked.hydra_mode
    try:
        app()
    except (ConfigCompositionException, OverrideParseException, OmegaConfBaseException) as err:
        raise UserError(one_line(err)) from None
    except SystemExit:  # a single run's end, or a sweep stopped (Ctrl-C, sweep.fail_fast)
        report_sweep(command, sweep_dir, stopping=True)
        raise
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM outside a job: between a sweep's jobs
        if not report_sweep(command, sweep_dir, stopping=True):
            sys.stderr.write("msr: stopped before the run began\n")
        sys.exit(getattr(stop, "exit_code", 130))
    else:
        report_sweep(command, sweep_dir)
    finally:
        Hydra.get_mode = get_mode


def report_sweep(command: str, folder: Path | None, stopping: bool = False) -> bool:
    """After a sweep: the table of its jobs and, if any failed, exit code 1 naming them; stopped,
    how to resume it. False when no sweep ran here (no manifest: nothing to report)."""
    from msr import sweeps

    if folder is None or not (folder / sweeps.MANIFEST).is_file():
        return False
    failed = sweeps.summarize(folder)
    hint = sweeps.resume_hint(command, folder) if stopping else ""
    if hint and not sweeps.is_finished(folder):
        sys.stderr.write(f"msr: the sweep stopped; {hint}\n")
    if failed and not stopping:
        named = "; ".join(f"job {r['job']} ({r['reason']})" for r in failed[:5])
        fail(f"{len(failed)} of {len(sweeps.read_manifest(folder))} jobs did not complete: {named}; their "
             f"records are in {folder / sweeps.MANIFEST}", code=1)
    return True


if __name__ == "__main__":
    main()
