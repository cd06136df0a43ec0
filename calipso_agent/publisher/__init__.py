"""Publishers: where the samples of a pipeline sink go, one module a scheme.

Publishers are loaded from the ``calipso.publisher`` namespace, keyed by the
URL scheme of the sink's publisher entry.
"""
