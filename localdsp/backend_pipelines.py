"""The DSP v1 server's rules for pipelines and their versions (kfp-tekton 1.5.x).

An upload inserts the pipeline (and its first version, same id and name) or the version as
CREATING, the handler stores the file, then `stored` makes the rows READY; until then get and
list do not see them (see `uploads`). A new version becomes the default unless auto-update is
off; deleting the default promotes the newest remaining version.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from localdsp.errors import ApiError, Internal, InvalidInput
from localdsp.filters import paginate
from localdsp.models import ListRequest, Page
from localdsp.models_v1 import PIPELINE_FIELDS, READY, VERSION_FIELDS, Pipeline, PipelineVersion
from localdsp.rules import StoreRules, newest
from localdsp.templates_v1 import parse_pipelinerun, template_parameters


def stored_file(content: bytes | str) -> str:
    """The uploaded file as the server keeps it: its own bytes (kfp-tekton 1.5's
    `CreatePipeline` stores the upload in the object store untouched, and the templates
    endpoints return that), not a re-marshal of what was parsed from it."""
    return content if isinstance(content, str) else content.decode("utf-8", errors="replace")


class PipelineRules(StoreRules):
    """Pipelines and versions, over the backend's store (`backend.Backend` is built on this)."""

    auto_update_default: bool
    list_context = "Failed to create list options"

    def _visible(self, found: object) -> bool:
        """An upload still CREATING is not found (see localdsp.uploads)."""
        return not isinstance(found, Pipeline | PipelineVersion) or found.status == READY

    def create_pipeline(
        self, name: str, description: str, content: bytes, status: str = READY
    ) -> Pipeline:
        """Upload: the pipeline and its first version, same id and name, that version default.
        The upload handler inserts them CREATING and calls `stored` once the file is stored."""
        try:
            template = parse_pipelinerun(content)
            parameters = template_parameters(template)
        except ApiError as err:
            raise err.wrap("Create pipeline failed") from err
        pipeline_id, now = str(uuid.uuid4()), self._now()
        pipeline = Pipeline(pipeline_id, name, description, now, parameters, pipeline_id, status)
        version = PipelineVersion(pipeline_id, pipeline_id, name, "", now, parameters, status)
        with self.store.transaction():
            pipeline = self._insert_unique(
                pipeline,
                f"Failed to create a new pipeline. The name {name} already exist. "
                "Please specify a new name.",
                "Create pipeline failed",
            )
            self.store.insert(version, pipeline_id=pipeline_id, template=stored_file(content))
        return pipeline

    def pipeline_namespace(self, pipeline_id: str) -> str:
        """The pipeline's namespace: always "" in single-user mode, once the pipeline exists."""
        self._found(Pipeline, "Pipeline", pipeline_id, "Failed to get namespace from Pipeline ID")
        return ""

    def create_version(
        self, pipeline_id: str, name: str, description: str, content: bytes, status: str = READY
    ) -> PipelineVersion:
        """Upload a version; it becomes the default unless auto-update is off (at insertion,
        as the server does, even while the version is still CREATING)."""
        try:
            template = parse_pipelinerun(content)
            parameters = template_parameters(template)
        except ApiError as err:
            raise err.wrap("Create pipeline version failed") from err
        version = PipelineVersion(
            str(uuid.uuid4()), pipeline_id, name, description, self._now(), parameters, status
        )
        with self.store.transaction():
            pipeline = self.get_pipeline(pipeline_id)
            version = self._insert_unique(
                version,
                f"Failed to create a new pipeline version. The name {name} already exist. "
                "Please specify a new name.",
                "Create pipeline version failed",
                pipeline_id=pipeline_id,
                template=stored_file(content),
            )
            if self.auto_update_default:
                self.store.save(replace(pipeline, default_version_id=version.id))
        return version

    def stored(self, version_id: str) -> None:
        """The upload's file is stored: its version (and a new pipeline) become READY."""
        with self.store.transaction():
            for kind, object_id in ((Pipeline, version_id), (PipelineVersion, version_id)):
                found = self.store.get(kind, object_id)
                if found is not None:
                    self.store.save(replace(found, status=READY))

    def get_pipeline(self, pipeline_id: str) -> Pipeline:
        return self._found(Pipeline, "Pipeline", pipeline_id)

    def default_version(self, pipeline: Pipeline) -> PipelineVersion | None:
        if not pipeline.default_version_id:
            return None
        return self.store.get(PipelineVersion, pipeline.default_version_id)

    def list_pipelines(self, request: ListRequest) -> Page:
        ready = [p for p in self.store.all(Pipeline) if p.status == READY]
        return self._page(ready, request, "Pipeline", PIPELINE_FIELDS)

    def delete_pipeline(self, pipeline_id: str) -> None:
        with self.store.transaction():
            self._found(Pipeline, "Pipeline", pipeline_id, "Delete pipeline failed")
            for version in self._versions_of(pipeline_id):
                self.store.delete(PipelineVersion, version.id)
            self.store.delete(Pipeline, pipeline_id)

    def set_default_version(self, pipeline_id: str, version_id: str) -> None:
        """Make `version_id` the default; localdsp also checks that it belongs to the pipeline."""
        with self.store.transaction():
            pipeline = self.get_pipeline(pipeline_id)
            version = self.get_version(version_id)
            if version.pipeline_id != pipeline_id:
                raise InvalidInput(
                    f"Pipeline version {version_id} does not belong to pipeline {pipeline_id}."
                )
            self.store.save(replace(pipeline, default_version_id=version_id))

    def pipeline_template(self, pipeline_id: str) -> str:
        pipeline = self._found(Pipeline, "Pipeline", pipeline_id, "Get pipeline template failed")
        if not pipeline.default_version_id:
            raise Internal("Get pipeline template failed since no default version is defined")
        return self.store.template(PipelineVersion, pipeline.default_version_id)

    def get_version(self, version_id: str) -> PipelineVersion:
        return self._found(PipelineVersion, "Version", version_id)

    def version_template(self, version_id: str) -> str:
        self._found(PipelineVersion, "Version", version_id, "Get pipeline version template failed")
        return self.store.template(PipelineVersion, version_id)

    def list_versions(self, key_type: str, key_id: str, request: ListRequest) -> Page:
        """The READY versions of an existing (READY) pipeline; a missing one is a 404."""
        options = self._list_options(request, "PipelineVersion", VERSION_FIELDS)
        if not key_type and not key_id:
            raise InvalidInput("ResourceKey must be set in the input")
        try:
            self.pipeline_namespace(key_id)
        except ApiError as err:
            raise err.wrap("Failed to get namespace from pipelineId.") from err
        ready = [v for v in self._versions_of(key_id) if v.status == READY]
        return Page(*paginate(ready, options, VERSION_FIELDS))

    def delete_version(self, version_id: str) -> None:
        """Delete a version; if it was the default, the newest remaining READY one takes over
        (kfp-tekton 1.5's PipelineStore.DeletePipelineVersion: the server refuses nothing, runs
        and jobs keep the manifests they were given)."""
        with self.store.transaction():
            version = self._found(
                PipelineVersion, "Version", version_id, "Delete pipeline version failed"
            )
            self.store.delete(PipelineVersion, version_id)
            pipeline = self.store.get(Pipeline, version.pipeline_id)
            if pipeline is not None and pipeline.default_version_id == version_id:
                stored = [v for v in self._versions_of(pipeline.id) if v.status == READY]
                latest = newest(stored)
                self.store.save(replace(pipeline, default_version_id=latest.id if latest else ""))

    def _versions_of(self, pipeline_id: str) -> list[PipelineVersion]:
        return self.store.versions_of(PipelineVersion, pipeline_id)
