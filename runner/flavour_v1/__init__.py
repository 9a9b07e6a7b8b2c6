"""The v1 flavour: kfp 1.8 + kfp-tekton 1.5, for DSP 1.x (Tekton). Only its modules import them."""
