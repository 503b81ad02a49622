"""fakeclue-builder: build the FakeClue explained real-vs-synthetic image dataset, reproducibly."""

__version__ = "0.1.0"
