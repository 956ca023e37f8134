"""brokerlink: one secure API over many broker accounts, with copy trading built in."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("brokerlink")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
