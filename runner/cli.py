"""Command line: parse, configure logging, dispatch, and turn errors into exit codes.

Expected failures (RunnerError) are one line and their own exit code; anything else is a bug
and keeps its traceback (exit 70).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import traceback

from runner import __version__
from runner.errors import ConfigurationError, RunnerError, exit_code_of
from runner.settings import Settings

COMMANDS = {
    "deploy": "discover, compile, upload changed pipelines as new versions, start runs (default)",
    "plan": "compile and read the server; print what deploy would do, changing nothing",
    "trigger": "cron mode: start runs of the deployed pipelines, once per DSP_RUN_KEY slot",
    "compile": "discover and compile into the output folder, offline (pull-request check)",
    "promote": "copy the default versions of --from-host to DSP_HOST as they are, then run "
    "and schedule them there",
    "prune": "delete old unused versions of dsp-runner's pipelines (DSP_KEEP_VERSIONS)",
}
EXIT_CODES = """exit codes:
  0    everything shipped
  1    some pipelines failed (module, compile, upload, run, or a run's state unreadable),
       or promote --require-success held a version back, or prune could not delete a version
  2    configuration error (a setting, the token, the pipelines folder)
  3    a run waited for (DSP_WAIT) ended in failure
  4    timed out waiting for runs (DSP_WAIT_TIMEOUT)
  5    the server refused the token (403) or its TLS certificate
  70   internal error (a bug: please report it with the traceback)
  130  interrupted (Ctrl-C)
  143  stopped by SIGTERM: nothing new was started, the summary was written"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsp-runner",
        description="Ship Kubeflow pipelines from git to OpenShift Data Science Pipelines.",
        epilog=_settings_epilog() + "\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dsp-runner {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands (default: deploy)"
    )
    for name, help_text in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        Settings.register_arguments(sub)
    return parser


def _settings_epilog() -> str:
    lines = ["settings (flag > environment variable > default; `COMMAND --help` for details):"]
    for field in dataclasses.fields(Settings):
        meta = field.metadata
        if "env" not in meta:
            continue
        flag = meta["flag"] or "(environment only)"
        lines.append(f"  {meta['env']:<30} {flag}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "deploy")
    ns = build_parser().parse_args(argv)
    try:
        settings = Settings.from_args(ns)
    except ConfigurationError as exc:
        print(f"dsp-runner: configuration error: {exc}", file=sys.stderr)
        return exc.exit_code
    from runner import commands, logs, retention, stopping
    from runner.promote import promote

    logs.configure(settings.log_format, settings.log_level)
    stopping.install()
    command = {
        "deploy": commands.deploy,
        "plan": commands.plan,
        "trigger": commands.trigger,
        "compile": commands.compile_pipelines,
        "promote": promote,
        "prune": retention.command,
    }[ns.command]
    try:
        return command(settings, stdout=sys.stdout)
    except RunnerError as exc:
        print(f"dsp-runner: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exit_code_of(exc)
    except KeyboardInterrupt as exc:
        print("dsp-runner: interrupted", file=sys.stderr)
        return exit_code_of(exc)
    except Exception as exc:
        traceback.print_exc()
        print(
            "dsp-runner: internal error (a bug): please report it with the traceback above",
            file=sys.stderr,
        )
        return exit_code_of(exc)


def run() -> None:
    """The process entry point: `main`, then leave without the interpreter's teardown.

    Tearing down kfp's module graph (kubernetes' models, protobuf) takes about 0.15 s after all
    the work is done: a tenth of a no-op deploy. By then every file is closed and the log
    handlers have flushed; stdout and stderr are flushed here.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError):
            stream.flush()
    os._exit(code)
