"""``repflow`` command line: run flows, run single stages (DVC's entry point), inspect the registry."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from repflow.config import ParamsError
from repflow.family import PARADIGMS, CommandContext, ListedMethod, load_params, port_number
from repflow.stage import Workspace


def _user_errors() -> tuple[type[BaseException], ...]:
    from repflow.checkpoints import CheckpointError
    from repflow.cluster import ClusterError
    from repflow.manifest import OutputError
    from repflow.sources import SourceError
    from repflow.stage import WorkspaceError
    from repflow.servers import ScheduleError, ServerError
    from repflow.tracking import RegistryError, TrackingError
    from repflow.family import FamilyError

    return (FamilyError, ParamsError, SourceError, OutputError, CheckpointError, ClusterError, RegistryError,
            WorkspaceError, ServerError, ScheduleError, TrackingError)


class _UserErrorsWithoutTraceback(logging.Filter):
    """Prefect logs a failed task and its flow each with the exception's full traceback; for a user error (a
    bad file, key or value) the one ``repflow: error:`` line says all, so those records keep their message and
    lose the traceback. Other exceptions keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], _user_errors()):
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_user_errors_in_flows() -> None:
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _UserErrorsWithoutTraceback) for f in logger.filters):
            logger.addFilter(_UserErrorsWithoutTraceback())


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if not verbose else logging.DEBUG,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("alembic", "mlflow.store", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _params_file(args: argparse.Namespace) -> Path:
    """``--params``, relative to ``--workdir`` unless absolute."""
    return Path(args.params) if Path(args.params).is_absolute() else Workspace.at(args.workdir).root / args.params


def cmd_run(args: argparse.Namespace) -> int:
    from repflow.family import get_family

    family = get_family(args.family)
    family.stages_to_run(args.stage)  # an unknown stage name is one line before anything starts
    ws = Workspace.at(args.workdir)
    params_file = _params_file(args)
    load_params(params_file, args.P)  # fail on bad params before Prefect, Ray or MLflow start
    ws.check_free()  # a folder another run holds: one line now, before any server is asked
    from repflow import servers, tracking
    from repflow.cluster import ensure_ray

    if api := servers.prefect_api_url():  # unset: prefect_api_for_run starts a temporary server below
        servers.check_prefect_api(api)  # before the folder's lock: a bad URL writes nothing
    tracking.check_tracking_server(tracking.tracking_uri(ws.root))  # one line now, not a failed flow
    _quiet_user_errors_in_flows()

    # a busy folder is one line here, not a failed flow run
    with ws.lock(), servers.prefect_api_for_run():
        ensure_ray()  # join RAY_ADDRESS (or start Ray) now, so a wrong address is one line, not a failed flow
        from repflow.flow import flow_with_runner

        summary = flow_with_runner(family, args.runner)(params_file=str(params_file), overrides=args.P,
                                                        workdir=str(ws.root), stages=args.stage or None)
    print(Path(summary["report"]).read_text())
    print(f"report: {summary['report']}")
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    from repflow import tracking
    from repflow.cluster import check_ray_address
    from repflow.family import resolve_stage
    from repflow.stage import run_in

    stage = resolve_stage(args.name)
    ws = Workspace.at(args.workdir)
    params = load_params(_params_file(args), args.P)
    check_ray_address()
    tracking.configure(ws.root)
    with ws.lock():
        tracking.close_orphaned_runs(ws.root)  # a killed stage (or flow) in this folder left them RUNNING
        out = run_in(ws, stage, params)
    print(f"{stage.qualname}: {out}")
    return 0


README_BEGIN = "<!-- families:begin -->"
README_END = "<!-- families:end -->"
REGENERATE_README = "repflow families --markdown --write-readme docs/methods.md"
DOCS_BEGIN = "<!-- reference:begin -->"
DOCS_END = "<!-- reference:end -->"
REGENERATE_DOCS = "repflow families --docs docs/families"


def methods_markdown(paradigm: str | None = None) -> str:
    """Every family's methods as one markdown table (family | method | kind | paradigm | paper | stage |
    registered model), read from the registries: the table docs/methods.md holds between its families markers."""
    from repflow.family import method_listing

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = ["| family | method | kind | paradigm | paper | stage | registered model |", "|---|---|---|---|---|---|---|"]
    for row in method_listing(paradigm):
        m = row.method
        models = ", ".join(f"`{name}`" for name in row.models) or "-"
        rows.append(f"| {row.family} | `{m.name}` | {m.kind} | {m.paradigm or '-'} | {cell(m.paper)} | "
                    f"`{row.stage}` | {models} |")
    return "\n".join(rows) + "\n"


def readme_with_table(text: str, table: str, source: str, markers: tuple[str, str] = (README_BEGIN, README_END),
                      what: str = "families table") -> str:
    """``text`` with what lies between ``markers`` (the families markers by default) replaced by ``table``;
    ``source`` names the file in the error when the markers are missing or out of order."""
    begin_marker, end_marker = markers
    begin, end = text.find(begin_marker), text.find(end_marker)
    if begin < 0 or end < begin:
        raise ValueError(f"{source}: needs the lines {begin_marker} and {end_marker} (in this order) around the "
                         f"{what}")
    return f"{text[:begin + len(begin_marker)]}\n{table}{text[end:]}"


def write_readme_table(path: str | Path, table: str, markers: tuple[str, str], what: str) -> int:
    """Replace the ``markers`` block of the file at ``path`` by ``table``: 0, or 2 with one line on stderr."""
    from repflow.manifest import atomic_write_text

    path = Path(path)
    try:
        atomic_write_text(path, readme_with_table(path.read_text(), table, str(path), markers, what))
    except (OSError, ValueError) as exc:
        print(f"repflow: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote the {what} into {path}")
    return 0


def write_family_pages(folder: str | Path) -> int:
    """Write each family's generated reference (declared stages, params keys) into ``folder/<family>.md``
    between the :data:`DOCS_BEGIN` / :data:`DOCS_END` markers, leaving the written prose around them; a page
    that does not exist yet is started with the family's summary. 0, or 2 with one line on stderr."""
    from repflow.family import families, reference_markdown
    from repflow.manifest import atomic_write_text

    folder = Path(folder)
    if not folder.is_dir():
        print(f"repflow: error: --docs {folder}: not a folder", file=sys.stderr)
        return 2
    for fam in families():
        path = folder / f"{fam.name}.md"
        try:
            text = path.read_text() if path.exists() else f"# {fam.name}\n\n{fam.summary}\n\n{DOCS_BEGIN}\n{DOCS_END}\n"
            atomic_write_text(path, readme_with_table(text, reference_markdown(fam), str(path), (DOCS_BEGIN, DOCS_END),
                                                      "generated reference"))
        except (OSError, ValueError) as exc:
            print(f"repflow: error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {fam.name}'s reference into {path}")
    return 0


def _print_methods(rows: list[ListedMethod], indent: str, with_family: bool,
                   verdicts: dict[tuple[str, str], list[str]]) -> None:
    from repflow.claims import verdict_summary

    columns = [[r.family for r in rows]] if with_family else []
    columns += [[r.method.kind for r in rows], [r.method.name for r in rows],
                [r.method.paradigm or "-" for r in rows], [r.stage for r in rows],
                [", ".join(r.models) or "-" for r in rows],
                [verdict_summary(verdicts.get((r.family, r.method.name), [])) for r in rows]]
    widths = [max(map(len, c)) + 2 for c in columns]
    for i, r in enumerate(rows):
        lead = "".join(f"{c[i]:<{w}}" for c, w in zip(columns, widths))
        print(f"{indent}{lead}{r.method.paper}")
        if r.method.summary:
            print(f"{indent}{'':<{sum(widths)}}{r.method.summary}")


def _method_verdicts() -> dict[tuple[str, str], list[str]]:
    """(family, method) → the verdicts of the claim records naming it (none when no records are found)."""
    from repflow.claims import default_claims_dir, load_claims, method_verdicts

    return method_verdicts(load_claims(default_claims_dir()).records)


def cmd_families(args: argparse.Namespace) -> int:
    from repflow.family import families, method_listing

    if args.docs:
        return write_family_pages(args.docs)
    if args.write_readme:
        if args.paradigm:
            print("repflow: error: --write-readme writes the whole table; drop --paradigm", file=sys.stderr)
            return 2
        return write_readme_table(args.write_readme, methods_markdown(), (README_BEGIN, README_END),
                                  "families table")
    if args.markdown:
        print(methods_markdown(args.paradigm), end="")
        return 0
    verdicts = _method_verdicts()
    if args.paradigm:
        rows = method_listing(args.paradigm)
        print(f"methods with SSL paradigm {args.paradigm!r} (family, kind, name, paradigm, stage, registered model, "
              f"claim verdicts, paper; summary below):")
        _print_methods(rows, "  ", with_family=True, verdicts=verdicts)
        return 0
    for fam in families():
        root = "top level" if fam.params_root is None else f"under '{fam.params_root}:'"
        print(f"{fam.name}: {fam.summary}\n  params: {', '.join(fam.params)} ({root} in params.yaml)\n  stages:")
        for s in fam.stages:
            reads = f" ← {', '.join(dict.fromkeys(s.inputs.values()))}" if s.inputs else ""
            models = "".join(f"  registers {m.name}" for m in s.registers)
            print(f"    {s.qualname:<18}{s.summary}{reads}{models}")
        rows = [r for r in method_listing() if r.family == fam.name]
        if rows:
            print("  methods (kind, name, SSL paradigm, stage, registered model, claim verdicts (repflow claims), "
                  "paper; summary below):")
            _print_methods(rows, "    ", with_family=False, verdicts=verdicts)
    return 0


CLAIMS_BEGIN = "<!-- claims:begin -->"
CLAIMS_END = "<!-- claims:end -->"
REGENERATE_CLAIMS = "repflow claims --markdown --write-readme README.md"


def cmd_claims(args: argparse.Namespace) -> int:
    """``repflow claims``: one row per claim record (family, paper, claim, gain and interval, verdict, reason,
    scale); a malformed record is skipped and named on stderr (exit 1), and never written into a README."""
    import json

    from repflow.claims import (claims_markdown, default_claims_dir, effect_text, load_claims, scale_text,
                                short_paper)
    from repflow.family import families

    folder = Path(args.results) if args.results else default_claims_dir()
    if not folder.is_dir():
        print(f"repflow: error: no claim records at {folder} (benchmarks write them; --results DIR points "
              "elsewhere)", file=sys.stderr)
        return 2
    found = load_claims(folder)
    records = found.records
    if args.family:
        known = sorted({f.name for f in families()} | {r["family"] for r in records})
        if args.family not in known:
            print(f"repflow: error: unknown family {args.family!r}; families: {', '.join(known)}", file=sys.stderr)
            return 2
        records = [r for r in records if r["family"] == args.family]
    for problem in found.problems:
        print(f"repflow: skipped {problem}", file=sys.stderr)
    if args.write_readme:
        if args.family or found.problems:
            why = "drop --family" if args.family else "fix the skipped records first"
            print(f"repflow: error: --write-readme writes every claim; {why}", file=sys.stderr)
            return 2
        return write_readme_table(args.write_readme, claims_markdown(records), (CLAIMS_BEGIN, CLAIMS_END),
                                  "claims table")
    if args.json:
        print(json.dumps(records, indent=1, ensure_ascii=False))
    elif args.markdown:
        print(claims_markdown(records), end="")
    else:
        columns = [[r["family"] for r in records], [r["verdict"] for r in records],
                   [effect_text(r) for r in records], [r["id"] for r in records]]
        widths = [max([len(h), *map(len, c)]) + 2 for h, c in zip(("family", "verdict", "gain [interval]", "id"),
                                                                   columns)]
        print("".join(f"{h:<{w}}" for h, w in zip(("family", "verdict", "gain [interval]", "id"), widths))
              + "paper: claim")
        for i, r in enumerate(records):
            print("".join(f"{c[i]:<{w}}" for c, w in zip(columns, widths)) + f"{short_paper(r['paper'])}: "
                  f"{r['claim']}")
            print(f"{'':<{sum(widths)}}reason: {r['reason']} | scale: {scale_text(r)}")
    return 1 if found.problems else 0


def cmd_dvc_yaml(args: argparse.Namespace) -> int:
    from repflow.dvc_stages import dvc_yaml
    from repflow.manifest import atomic_write_text

    root = Workspace.at(args.workdir).root
    if not root.is_dir():
        print(f"repflow: error: --workdir {root}: no such folder", file=sys.stderr)
        return 2
    text, path = dvc_yaml(root), root / "dvc.yaml"
    if args.write:
        atomic_write_text(path, text)
        print(f"wrote {path}")
        return 0
    if not path.is_file() or path.read_text() != text:
        print(f"{path} is not what the stage declarations give; run: repflow dvc-yaml --write", file=sys.stderr)
        return 1
    print(f"{path} matches the stage declarations")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    import mlflow

    from repflow import tracking

    tracking.parse_model_ref(args.ref)  # a malformed reference is one line before the registry opens
    tracking.configure(args.workdir, read_only=True)
    if args.action == "show":
        print(tracking.describe_model(args.ref))
    else:
        client = mlflow.MlflowClient()
        for m in client.search_registered_models():
            aliases = ", ".join(f"{a}→v{v}" for a, v in sorted(m.aliases.items())) or "-"
            latest = max((int(v.version) for v in client.search_model_versions(f"name='{m.name}'")), default=0)
            print(f"{m.name}  latest v{latest}  aliases: {aliases}")
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from repflow import tracking

    tracking.parse_model_ref(args.ref)
    tracking.configure(args.workdir, read_only=True)
    print(tracking.format_lineage(args.ref, tracking.trace_lineage(args.ref)))
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def cmd_ui(args: argparse.Namespace) -> int:
    import signal

    from repflow import servers

    if args.prefect_port == args.mlflow_port:
        raise servers.ServerError(f"--prefect-port and --mlflow-port are both {args.prefect_port}; give each server "
                                  f"its own port")
    if not Path(args.workdir).is_dir():
        raise servers.ServerError(f"--workdir {args.workdir}: no such folder")
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the servers the same way as Ctrl-C
    try:
        ui = servers.start_ui(args.workdir, prefect_port=args.prefect_port, mlflow_port=args.mlflow_port)
    except KeyboardInterrupt:  # start_ui stopped what it had started
        return 0
    print(f"Prefect UI: {ui.prefect.url}\nMLflow UI:  {ui.mlflow.url}\n"
          f"To send runs from another shell to these servers:\n"
          f"  export PREFECT_API_URL={ui.prefect_api_url}\n  export MLFLOW_TRACKING_URI={ui.mlflow.url}\n"
          f"Logs: {ui.prefect.log_path.parent}. Ctrl-C stops both.", flush=True)
    try:
        dead = ui.wait()
    except KeyboardInterrupt:
        dead = None
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop short
    left = ui.stop()
    if dead is not None:
        raise dead.failure(f"exited on its own (code {dead.exit_code()}); stopped the other server too")
    if left:
        raise servers.ServerError(f"still running after SIGKILL: pids {sorted(p.pid for p in left)}")
    print("Stopped both servers.", flush=True)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from repflow import servers

    schedule = servers.validate_schedule(args.cron, args.interval)
    ws_root = Workspace.at(args.workdir).root
    params_file = _params_file(args)
    load_params(params_file, args.P)
    api = servers.require_prefect_api("repflow serve")
    from repflow import tracking

    tracking.check_tracking_server(tracking.tracking_uri(ws_root))
    _quiet_user_errors_in_flows()
    try:
        from prefect.types.entrypoint import EntrypointType

        from repflow.family import get_family

        main_flow = get_family(args.family).flow_function()

        when = f"cron '{args.cron}' UTC" if args.cron else f"every {schedule['interval']:g} s"
        after = "paused" if args.pause_on_shutdown else "active"
        print(f"Serving {main_flow.name}/{args.name} ({when}) on {api}; Ctrl-C stops serving, the schedule stays "
              f"{after}.", flush=True)
        # Prefect's serve handles Ctrl-C and SIGTERM itself once it runs; this catch covers the imports before
        main_flow.serve(name=args.name, **schedule, paused=False, pause_on_shutdown=args.pause_on_shutdown,
                        parameters={"params_file": str(params_file), "overrides": list(args.P),
                                    "workdir": str(ws_root)},
                        entrypoint_type=EntrypointType.MODULE_PATH)  # flows.pipeline imports from any directory
    except KeyboardInterrupt:
        pass
    return 0


def cmd_deployments(args: argparse.Namespace) -> int:
    from repflow import servers

    servers.require_prefect_api("repflow deployments")
    for line in servers.deployment_lines():
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="repflow", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--params", default="params.yaml", help="params file (relative to --workdir)")
        sp.add_argument("-P", action="append", default=[], metavar="KEY=VALUE",
                        help="override a param, e.g. -P train.epochs=3 (repeatable)")
        sp.add_argument("--workdir", default=".", help="project folder holding params, outputs and mlflow.db")

    r = sub.add_parser("run", help="run a family's flow (default: the image family)")
    r.add_argument("family", nargs="?", default=None, help="family to run (repflow families lists them)")
    r.add_argument("--runner", default="local", choices=["local", "ray"],
                   help="stage tasks one at a time in this process (local), or as Ray tasks, independent stages "
                        "side by side (ray)")
    r.add_argument("--stage", action="append", default=[], metavar="NAME",
                   help="run only this stage (train, or image.train as `repflow stage` names it) and the stages "
                        "it reads from (repeatable); on-demand stages such as image.compare run only when named")
    common(r)
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("stage", help="run one stage on the workspace's standard folders (what dvc.yaml calls)")
    s.add_argument("name", metavar="FAMILY.STAGE", help="e.g. image.train; a bare name is the image family's")
    common(s)
    s.set_defaults(func=cmd_stage)

    m = sub.add_parser("models", help="the MLflow model registry")
    m.add_argument("action", choices=["show", "list"])
    m.add_argument("ref", nargs="?", default="repflow-encoder@champion", help="NAME@ALIAS, NAME/VERSION or NAME")
    m.add_argument("--workdir", default=".")
    m.set_defaults(func=cmd_models)

    lin = sub.add_parser("lineage", help="walk from a registered model back to the raw data, stage by stage")
    lin.add_argument("ref", nargs="?", default="repflow-encoder@champion", help="NAME@ALIAS, NAME/VERSION or NAME")
    lin.add_argument("--workdir", default=".")
    lin.set_defaults(func=cmd_lineage)

    u = sub.add_parser("ui", help="start the Prefect and MLflow servers and UIs for a workspace (Ctrl-C stops both)")
    u.add_argument("--workdir", default=".", help="project folder holding mlflow.db (logs go to .repflow/logs/)")
    u.add_argument("--prefect-port", type=port_number, default=4200)
    u.add_argument("--mlflow-port", type=port_number, default=5000)
    u.set_defaults(func=cmd_ui)

    sv = sub.add_parser("serve", help="run the main flow on a schedule (needs a Prefect server: repflow ui)")
    when = sv.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help="cron expression in UTC, e.g. '0 3 * * *' (daily at 03:00)")
    when.add_argument("--interval", metavar="SECONDS", help="run every SECONDS seconds")
    sv.add_argument("family", nargs="?", default=None, help="family whose flow to serve (default: image)")
    sv.add_argument("--name", default="scheduled", help="deployment name, shown as repflow-<family>/NAME")
    sv.add_argument("--pause-on-shutdown", action="store_true",
                    help="pause the schedule when serve stops (default: it stays active)")
    common(sv)
    sv.set_defaults(func=cmd_serve)

    d = sub.add_parser("deployments", help="list the deployments on the Prefect server at PREFECT_API_URL")
    d.set_defaults(func=cmd_deployments)

    f = sub.add_parser("families", help="list families, their stages, and their methods (SSL paradigm, paper, "
                                        "stage, registered model)")
    f.add_argument("--paradigm", choices=PARADIGMS, help="only the methods of this SSL paradigm, across families")
    f.add_argument("--markdown", action="store_true",
                   help="print the methods as one markdown table (what docs/methods.md holds)")
    f.add_argument("--write-readme", metavar="PATH",
                   help=f"replace the table between {README_BEGIN} and {README_END} in PATH (docs/methods.md)")
    f.add_argument("--docs", metavar="DIR", help=f"write each family's declared stages and params keys into "
                                                 f"DIR/<family>.md between {DOCS_BEGIN} and {DOCS_END} "
                                                 f"(docs/families)")
    f.set_defaults(func=cmd_families)

    cl = sub.add_parser("claims", help="each seed paper's claims as the benchmarks judged them: gain and its interval, "
                                       "verdict (holds / does not hold / inconclusive) and why, at what scale")
    cl.add_argument("--family", metavar="F", help="only this family's claims")
    shape = cl.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print the records as JSON")
    shape.add_argument("--markdown", action="store_true", help="print one markdown table (what README.md holds)")
    cl.add_argument("--write-readme", metavar="PATH",
                    help=f"replace the table between {CLAIMS_BEGIN} and {CLAIMS_END} in PATH (README.md)")
    cl.add_argument("--results", metavar="DIR", help="folder of claim records (default: benchmarks/results/claims "
                                                     "here, else in the repository this package sits in)")
    cl.set_defaults(func=cmd_claims)

    dv = sub.add_parser("dvc-yaml", help="check (default) or --write dvc.yaml from the stage declarations")
    dv.add_argument("--write", action="store_true")
    dv.add_argument("--workdir", default=".")
    dv.set_defaults(func=cmd_dvc_yaml)

    from repflow.family import families

    cli = CommandContext(common=common, run=cmd_run)
    for fam in families():
        fam.add_commands(sub, cli)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    from repflow.cluster import prepare_ray_client

    prepare_ray_client()  # before anything imports ray
    # before anything imports prefect: stage logs ("repflow.*") go to the flow run's log in the UI
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "repflow")
    try:
        return args.func(args)
    except _user_errors() as exc:
        print(f"repflow: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
