"""`python -m localdsp`: serve the DSP stand-in, or run one command against a fresh instance.

    python -m localdsp serve [--host H] [--port P] [--data-dir D] [--api V] [fault flags] [--tls]
    python -m localdsp exec [--data-dir D] [--api V] [fault flags] [--tls] -- CMD ARGS...

`--api v1` (the default) is a DSP 1.x server; `--api v2` a DSP 2.x one (KFP backend 2.5.0), whose
runs execute with kfp.local where kfp 2 is installed (localdsp.run_kfp_local) and stay PENDING
elsewhere; its recurring runs are stored, not fired.

`serve` runs in the foreground until Ctrl-C or SIGTERM. It checks bearer tokens only when
LOCALDSP_TOKEN is set: a token is never a flag, because argv shows in process listings.

Both execute created runs on this machine (steps as local processes, see localdsp.runs) and start
enabled recurring runs on schedule, unless --no-execute (or LOCALDSP_EXECUTE=false).

`exec` starts the server on a free loopback port with a new random token, runs CMD with
DSP_HOST and DSP_TOKEN (and DSP_CA_BUNDLE with --tls) added to its environment, stops the
server, says on stderr where it ran and where its data is, and exits with CMD's exit code.

Every flag has a LOCALDSP_* environment variable (named in --help); a flag wins over it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from localdsp.faults import RandomFaults
from localdsp.server import LocalDSP

EXIT_USAGE = 2
EXIT_NOT_FOUND = 127


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        faults = RandomFaults(
            error_rate=args.error_rate,
            error_status=args.error_status,
            latency_ms=args.latency_ms,
            drop_after_commit_rate=args.drop_after_commit_rate,
            seed=args.seed,
        )
    except ValueError as err:
        print(f"localdsp: {err}", file=sys.stderr)
        return EXIT_USAGE
    command: Callable[[argparse.Namespace, RandomFaults], int] = args.run
    return command(args, faults)


def serve(args: argparse.Namespace, faults: RandomFaults) -> int:
    """Serve until interrupted; the token, if any, comes from LOCALDSP_TOKEN only."""
    token = os.environ.get("LOCALDSP_TOKEN") or None
    stop = threading.Event()
    dsp = LocalDSP(
        args.data_dir,
        tokens=[token] if token else None,
        host=args.host,
        port=args.port,
        tls=args.tls,
        random_faults=faults,
        execute=args.execute,
        api=args.api,
    )
    with dsp, _on_signal(signal.SIGTERM, stop.set):
        auth = "bearer token from LOCALDSP_TOKEN required" if token else "no token check"
        runs = "runs execute locally" if args.execute else "runs do not execute"
        if args.api == "v2":
            runs = "DSP 2.x API; " + _v2_runs(dsp)
        print(
            f"localdsp: serving {dsp.url} ({auth}; {runs}; data in {args.data_dir}); Ctrl-C stops",
            file=sys.stderr,
        )
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


def _v2_runs(dsp: LocalDSP) -> str:
    """What a v2 server does with runs, for the start-up line."""
    if dsp.execute_v2:
        return "runs execute locally with kfp.local; recurring runs are stored, not fired"
    if dsp.execute:
        return "runs are stored, not executed (this Python has no kfp 2, so no kfp.local)"
    return "runs are stored, not executed"


def exec_command(args: argparse.Namespace, faults: RandomFaults) -> int:
    """Run one command against a fresh server and exit with the command's code."""
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("localdsp exec: give a command after --, e.g. -- python -m runner", file=sys.stderr)
        return EXIT_USAGE
    token = secrets.token_urlsafe(32)
    with LocalDSP(
        args.data_dir,
        tokens=[token],
        host="127.0.0.1",
        tls=args.tls,
        random_faults=faults,
        execute=args.execute,
        api=args.api,
    ) as dsp:
        env = {**os.environ, "DSP_HOST": dsp.url, "DSP_TOKEN": token}
        if dsp.ca_file is not None:
            env["DSP_CA_BUNDLE"] = str(dsp.ca_file)
        code = _run(command, env)
        url = dsp.url
    print(
        f"localdsp: {command[0]} ran against {url}, stopped now; its data stays in "
        f"{args.data_dir} (python -m localdsp serve --data-dir {args.data_dir} to look)",
        file=sys.stderr,
    )
    return code


def _run(command: list[str], env: dict[str, str]) -> int:
    """Run `command` to its end; SIGTERM is passed on, Ctrl-C already reaches it (its group)."""
    try:
        process = subprocess.Popen(command, env=env)
    except OSError as err:
        print(f"localdsp exec: cannot run {command[0]}: {err.strerror}", file=sys.stderr)
        return EXIT_NOT_FOUND
    with _on_signal(signal.SIGTERM, process.terminate):
        while True:
            try:
                code = process.wait()
                break
            except KeyboardInterrupt:
                continue
    return 128 - code if code < 0 else code


@contextmanager
def _on_signal(signum: int, action: Callable[[], object]) -> Iterator[None]:
    """Call `action` on `signum` inside the block (signals need the main thread), then restore."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signum, lambda *_: action())
    try:
        yield
    finally:
        signal.signal(signum, previous)


def _env(name: str, default: str | None) -> str | None:
    return os.environ.get(name, default)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m localdsp", description="A local stand-in for the DSP API server (v1 or v2)."
    )
    commands = parser.add_subparsers(dest="subcommand", required=True)
    serve_parser = commands.add_parser("serve", help="serve in the foreground")
    serve_parser.add_argument(
        "--host", default=_env("LOCALDSP_HOST", "127.0.0.1"), help="(env LOCALDSP_HOST)"
    )
    serve_parser.add_argument(
        "--port", type=int, default=_env("LOCALDSP_PORT", "8888"), help="(env LOCALDSP_PORT)"
    )
    _add_common(serve_parser)
    serve_parser.set_defaults(run=serve)
    exec_parser = commands.add_parser(
        "exec", help="run a command with DSP_HOST/DSP_TOKEN pointing at a fresh server"
    )
    _add_common(exec_parser)
    exec_parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    exec_parser.set_defaults(run=exec_command)
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    """The data folder, TLS and the random-fault settings both subcommands take."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=_env("LOCALDSP_DATA_DIR", ".localdsp"),
        help="where the SQLite state is kept (env LOCALDSP_DATA_DIR)",
    )
    parser.add_argument(
        "--api",
        choices=("v1", "v2"),
        default=_env("LOCALDSP_API", "v1"),
        help="which DSP generation to serve: v1 (DSP 1.x, kfp-tekton 1.5) or v2 (DSP 2.x, "
        "KFP backend 2.5) (env LOCALDSP_API)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        default=_env("LOCALDSP_TLS", "") not in ("", "0", "false"),
        help="serve HTTPS, self-signed certificate in the data folder (env LOCALDSP_TLS)",
    )
    parser.add_argument(
        "--no-execute",
        dest="execute",
        action="store_false",
        default=_env("LOCALDSP_EXECUTE", "true").lower() not in ("0", "false", "no", "off"),
        help="store runs without running them; by default each run's PipelineRun executes "
        "locally and enabled recurring runs start on schedule (env LOCALDSP_EXECUTE=false)",
    )
    parser.add_argument(
        "--error-rate",
        type=float,
        default=_env("LOCALDSP_ERROR_RATE", "0"),
        help="share of API requests answered with --error-status (env LOCALDSP_ERROR_RATE)",
    )
    parser.add_argument(
        "--error-status",
        type=int,
        default=_env("LOCALDSP_ERROR_STATUS", "503"),
        help="status of random errors (env LOCALDSP_ERROR_STATUS)",
    )
    parser.add_argument(
        "--latency-ms",
        type=int,
        default=_env("LOCALDSP_LATENCY_MS", "0"),
        help="delay before every API request (env LOCALDSP_LATENCY_MS)",
    )
    parser.add_argument(
        "--drop-after-commit-rate",
        type=float,
        default=_env("LOCALDSP_DROP_AFTER_COMMIT_RATE", "0"),
        help="share of API requests processed, then cut off with no response "
        "(env LOCALDSP_DROP_AFTER_COMMIT_RATE)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=_env("LOCALDSP_SEED", None),
        help="seed of the random faults, to repeat a run (env LOCALDSP_SEED)",
    )
