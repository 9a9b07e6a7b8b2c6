"""dsp-runner: ship Kubeflow pipelines from git to OpenShift Data Science Pipelines."""

__version__ = "0.1.0"
