"""The v2 flavour: kfp 2, for DSP 2.x (KFP 2 on Argo). Only its modules import kfp 2."""
