"""What a user writes without edgekit: the LiteRT post-training int8 recipe from the TF docs.

Kept deliberately plain (from_keras_model, 100 representative samples, int8 ops only, int8 I/O),
so the benchmark compares edgekit with the script people actually copy.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def convert_fp32(model) -> bytes:
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def convert_int8(model, x_train: np.ndarray) -> bytes:
    def representative_dataset():
        for sample in x_train[:100]:
            yield [sample[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()
