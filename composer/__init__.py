"""composer: learn music from MIDI corpora with a Keras stacked LSTM and compose new pieces."""

__version__ = "0.1.0"


class ComposerError(Exception):
    """A user-facing error: the CLI prints its message on one line, never a traceback."""
