"""The exception tree of certwatch.

Every error that certwatch raises on purpose derives from `CertwatchError`.
The tree is shallow:

- `TargetError`: a target string cannot be parsed (also a `ValueError`).
- `ThresholdError`: a `--warning` or `--critical` value is invalid (also a
  `ValueError`).
- `TrustStoreError`: a CA file cannot be read or contains no certificate.
- `certwatch.probe.resolve.ResolutionError`: a name did not resolve; the
  probe turns it into a `dns_error` result, so it never leaves the probe.
- `certwatch.x509.der.DerError`: bytes hold no DER certificate structure;
  `read_facts` turns it into a parse problem, so it never leaves `x509`.
- `certwatch.store.errors.StoreError`: a database URL or stored value is
  invalid.

A failed probe or an unreadable certificate file is not an exception: it is a
result with an error reason, so one bad endpoint never stops a run.
"""


class CertwatchError(Exception):
    """Root of every exception certwatch raises on purpose."""


class TargetError(CertwatchError, ValueError):
    """A target string that cannot be parsed into an endpoint."""


class ThresholdError(CertwatchError, ValueError):
    """A warning or critical threshold that is not days or a percentage."""


class TrustStoreError(CertwatchError):
    """A trust store file that cannot be read or contains no certificate."""
