"""Workstation side of edgekit: load a model, quantize it per profile, validate it, bundle it.

Heavy packages (TensorFlow, onnx) are imported inside the functions that need them.
"""
