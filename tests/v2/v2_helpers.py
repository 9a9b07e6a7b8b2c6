"""What a DSP 2.x server holds, read through kfp 2's own client as a user would list it."""

from __future__ import annotations

WRITES = ("POST", "PUT", "PATCH", "DELETE")


def server_state(client) -> tuple[dict[str, dict], list]:
    """{pipeline: {id, versions (names), newest}} and every run."""
    pipelines = {}
    for p in client.list_pipelines(page_size=100).pipelines or []:
        listed = client.list_pipeline_versions(p.pipeline_id, page_size=100).pipeline_versions or []
        newest = max(listed, key=lambda v: (v.created_at, v.display_name != p.display_name))
        pipelines[p.display_name] = {
            "id": p.pipeline_id,
            "versions": sorted(v.display_name for v in listed),
            "newest": newest.display_name,
            "version_ids": {v.display_name: v.pipeline_version_id for v in listed},
        }
    return pipelines, client.list_runs(page_size=100).runs or []


def jobs(client) -> list:
    return client.list_recurring_runs(page_size=100).recurring_runs or []


def writes(dsp) -> list[dict]:
    """The write requests the server's request log holds (admin endpoints are not logged)."""
    return [r for r in dsp.requests() if r["method"] in WRITES and r["path"].startswith("/apis")]


def posts(dsp, path: str) -> int:
    return sum(1 for r in dsp.requests() if r["method"] == "POST" and r["path"] == path)
