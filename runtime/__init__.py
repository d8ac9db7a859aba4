"""Device side of edgekit: interpreter backends, prediction and benchmarking.

Never imports TensorFlow, Keras, onnx or ``edgekit.converters``: a board installs only
``edgekit[device]``.
"""
