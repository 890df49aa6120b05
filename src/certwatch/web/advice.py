"""Plain-words explanations of finding codes and probe errors, with what to do.

The finding codes are the public contract of `certwatch.x509.model.Finding`
plus those that `check.py` (`starttls_not_offered`) and the stale
deployment check (`stale_deployment`) add. The error reasons are those of
`certwatch.probe.model.ErrorReason`. A test compares both maps with those
sources, so a new code cannot go without advice.

One code can stand for problems with different fixes: `incomplete_chain`
covers a missing issuer, a wrong intermediate and a loop, and its message
names the reason (`certwatch.x509.trust`). `finding_advice` picks the advice by
the message for those.
"""

from __future__ import annotations

from dataclasses import dataclass

from certwatch.probe.model import ErrorReason


@dataclass(frozen=True)
class Advice:
    """The meaning of a finding or error and the action it calls for."""

    meaning: str
    action: str


FINDING_ADVICE: dict[str, Advice] = {
    "expired": Advice(
        "The certificate's not_after has passed, so clients reject the connection.",
        "Renew the certificate now, install it on the server and reload the service.",
    ),
    "expiring_soon": Advice(
        "The certificate expires within the warning window.",
        "Renew it before not_after, or check why automatic renewal (ACME, "
        "for example) has not done so yet.",
    ),
    "not_yet_valid": Advice(
        "The certificate's not_before is in the future, so clients reject it "
        "until then.",
        "Check the clock of the machine that issued it, or install the "
        "previous certificate until this one becomes valid.",
    ),
    "hostname_mismatch": Advice(
        "The certificate does not name the host that clients connect to.",
        "Issue a certificate whose subject alternative names include this host "
        "name, or serve the right certificate for this name (SNI).",
    ),
    "self_signed": Advice(
        "The certificate signs itself and no trusted root vouches for it.",
        "Replace it with a certificate from a public or internal CA, or add it "
        "to the trust store of every client on purpose.",
    ),
    "untrusted_root": Advice(
        "The chain is complete up to its root, but the trust store does not "
        "contain that root, so sending more intermediates does not help.",
        "If the root is your organisation's own, add it to the trust store of "
        "certwatch (CERTWATCH_CA_FILE) and of every client. Otherwise use a "
        "certificate from a CA that clients trust.",
    ),
    "incomplete_chain": Advice(
        "The path from the certificate to a trusted root breaks off: an "
        "intermediate is missing or wrong, or the root is not in the trust store.",
        "Read the finding's message for the certificate whose issuer is missing, "
        "then send that intermediate, or add a private root to the trust store.",
    ),
    "chain_expired": Advice(
        "A certificate on the path to the root has expired.",
        "Install the CA's current intermediate certificates in the chain the "
        "server sends.",
    ),
    "chain_expiring": Advice(
        "An intermediate on the path to the root expires soon.",
        "Fetch the CA's new intermediate and update the chain file before that date.",
    ),
    "chain_invalid": Advice(
        "The chain cannot be validated to a trusted root.",
        "Read the finding's message for the reason, then fix the chain file or "
        "the certificate it names.",
    ),
    "weak_key": Advice(
        "The certificate's key is shorter than current guidance allows.",
        "Issue a new certificate with an RSA key of at least 2048 bits or an "
        "ECDSA P-256 key.",
    ),
    "weak_signature": Advice(
        "The certificate is signed with a hash that is no longer safe, such as "
        "SHA-1 or MD5.",
        "Reissue the certificate signed with SHA-256 or stronger.",
    ),
    "excessive_lifetime": Advice(
        "The certificate is valid for longer than browsers accept for public "
        "certificates.",
        "Issue certificates with a shorter validity, and automate their renewal.",
    ),
    "parse_error": Advice(
        "Part of the certificate cannot be read, so some checks could not run.",
        "Reissue the certificate with a current CA or tool, and read the message "
        "for the part that failed.",
    ),
    "extra_certificate_expired": Advice(
        "The server sends an expired certificate that clients do not need for "
        "the path to the root.",
        "Remove the expired certificate from the chain file the server sends.",
    ),
    "client_certificate_required": Advice(
        "The server asks for a client certificate, so only its own chain was checked.",
        "No action is needed unless clients without a certificate should be served.",
    ),
    "starttls_not_offered": Advice(
        "The server answered the plain-text greeting without offering STARTTLS.",
        "Enable STARTTLS on the server, or check that the protocol and port of "
        "the endpoint are right.",
    ),
    "stale_deployment": Advice(
        "A renewed certificate exists, but this place still serves the old one.",
        "Install the renewed certificate here and reload the service.",
    ),
}

INCOMPLETE_CHAIN_ADVICE: dict[str, Advice] = {
    # The keys are parts of the messages of `certwatch.x509.trust`, one per
    # reason the path search stops. tests/web/test_advice.py runs the
    # analysis for each, so a changed message fails a test.
    "was not sent and is not in the trust store": Advice(
        "The issuer of the last certificate on the path is neither sent by the "
        "server nor in the trust store. Either the server leaves out an "
        "intermediate, or the chain ends below a private root that certwatch "
        "does not trust.",
        "If the missing issuer is an intermediate of the CA, configure the "
        "server to send the CA's chain file: leaf first, then the intermediates. "
        "If it is your organisation's root, the server's chain is fine, because "
        "servers need not send roots: add the root to the trust store of "
        "certwatch (CERTWATCH_CA_FILE) and of every client.",
    ),
    "did not sign": Advice(
        "The server sends an intermediate with the right name that did not sign "
        "the certificate before it, often an outdated intermediate from before "
        "the CA changed its key.",
        "Replace that intermediate in the chain file with the one that issued "
        "the certificate, from the CA's current chain file, and reload the service.",
    ),
    "so the chain loops": Advice(
        "The certificates the server sends lead back to one already on the "
        "path, so they never reach a trusted root.",
        "Replace the chain file with the CA's current one, leaf first, then the "
        "intermediates, and reload the service.",
    ),
}

ERROR_ADVICE: dict[str, Advice] = {
    ErrorReason.DNS_ERROR: Advice(
        "The host name did not resolve to any address.",
        "Check the spelling of the name and its DNS records.",
    ),
    ErrorReason.CONNECTION_REFUSED: Advice(
        "The server refused the connection on this port.",
        "Check that the service is running and listens on this port.",
    ),
    ErrorReason.CONNECTION_FAILED: Advice(
        "The connection could not be opened.",
        "Check the routing and firewalls between certwatch and the server.",
    ),
    ErrorReason.TIMEOUT: Advice(
        "The server did not respond in time.",
        "Check that a firewall lets certwatch reach the port, and that the "
        "server is not overloaded.",
    ),
    ErrorReason.TLS_HANDSHAKE_FAILED: Advice(
        "The TLS handshake failed before a certificate arrived.",
        "Check that the port speaks TLS with this protocol, and read the message "
        "for the server's alert.",
    ),
    ErrorReason.STARTTLS_REFUSED: Advice(
        "The server rejected the STARTTLS command.",
        "Enable STARTTLS on the server, or use the implicit-TLS port.",
    ),
    ErrorReason.STARTTLS_FAILED: Advice(
        "The plain-text dialogue before STARTTLS failed.",
        "Check that the endpoint's protocol matches the service on this port.",
    ),
    ErrorReason.NO_CERTIFICATE: Advice(
        "The server completed the handshake without sending a certificate.",
        "Configure a certificate for this service.",
    ),
    ErrorReason.INVALID_TARGET: Advice(
        "The target cannot be scanned as written.",
        "Remove the endpoint and add it again with a valid host name or address.",
    ),
    ErrorReason.FILE_ERROR: Advice(
        "The certificate file could not be read.",
        "Check that the file exists and that certwatch may read it.",
    ),
    ErrorReason.ADDRESS_NOT_ALLOWED: Advice(
        "The name resolves to a loopback, private or reserved address, which "
        "this site does not scan.",
        "Watch a name with a public address, or ask the operator to allow "
        "private targets on a site that only trusted users reach.",
    ),
}

_UNKNOWN_FINDING = Advice(
    "This finding has no explanation in this version of certwatch.",
    "Read the finding's message.",
)
_UNKNOWN_ERROR = Advice(
    "The scan failed for a reason this version of certwatch does not describe.",
    "Read the error message.",
)


def finding_advice(code: str, message: str = "") -> Advice:
    """Return the explanation and fix for a finding, by its code and message.

    Without a message, or with one of an unknown wording, an
    `incomplete_chain` finding gets the advice that covers all its reasons.
    """
    if code == "incomplete_chain":
        for wording, advice in INCOMPLETE_CHAIN_ADVICE.items():
            if wording in message:
                return advice
    return FINDING_ADVICE.get(code, _UNKNOWN_FINDING)


def error_advice(reason: str | None) -> Advice:
    """Return the explanation and fix for a probe error reason."""
    if reason is None:
        return _UNKNOWN_ERROR
    return ERROR_ADVICE.get(reason, _UNKNOWN_ERROR)
