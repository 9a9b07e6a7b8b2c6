"""localdsp's Tekton: runs a kfp-tekton PipelineRun here as the cluster's controllers would.

`run.execute` is the entry point. The work is cut where Tekton cuts it: `plan` (with
`validation`) checks the PipelineRun and turns it into tasks; `scheduler` walks the DAG like the
PipelineRun reconciler; `jobs` and `steps` are what a TaskRun's pod does (resolve, then run the
steps as processes); `custom` holds the plug-ins that stand in for custom-task controllers;
`status` renders everything as the Tekton v1beta1 status the persistence agent would store.
Nothing is imported here, so importing one module does not load the others.
"""
