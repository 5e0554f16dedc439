"""trtbuild: declarative multi-model TensorRT engine builds that rebuild only what is stale."""

__version__ = "0.1.0"
