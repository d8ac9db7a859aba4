"""Lazy, quiet import of TensorFlow and Keras."""

from __future__ import annotations

import logging
import os
from types import ModuleType

from edgekit._optional import require


def tensorflow() -> ModuleType:
    """The ``tensorflow`` module, imported on first use with its INFO chatter turned down."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = require("tensorflow", extra="build")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return tf


def keras() -> ModuleType:
    """The Keras 3 module (imported after TensorFlow so it picks the TensorFlow backend)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    tensorflow()
    return require("keras", extra="build")
