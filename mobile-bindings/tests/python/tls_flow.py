"""A phone app enrolling from a QR code that pins an office server's self-signed certificate.

Run by tests/python.rs with the bindings and the library in PYTHONPATH, and with HAMLET_LINK
(what the QR code holds: server, code and pin), HAMLET_WRONG_LINK (the same code pinning another
certificate) and HAMLET_STORE set. Prints one JSON line with the ids it recorded.
"""

import json
import os
import sys

from hamlet_mobile import HamletCollector, HamletError

CAMPAIGN = "tin-nhiem-2025"
HAMLET = "thon-dong"
LEVELS = ["tin_nhiem_cao", "tin_nhiem", "tin_nhiem_thap"]


def check(condition, message):
    if not condition:
        print("FAILED: " + message, file=sys.stderr)
        sys.exit(1)


def main():
    phone = HamletCollector.open(os.environ["HAMLET_STORE"])
    phone.set_fixed_today("2025-06-02")
    # The server does not present the pinned certificate: the app is told so, apart from
    # network faults, and nothing was sent.
    try:
        phone.enroll("", os.environ["HAMLET_WRONG_LINK"], "Điện thoại thử")
        check(False, "a server with another certificate must be refused")
    except HamletError.UntrustedCertificate as e:
        check("nothing was sent" in str(e), "the error says nothing was sent: %s" % e)
    check(phone.enrollment() is None, "not enrolled after a refusal")

    # The QR code names the server: the collector types nothing.
    enrolled = phone.enroll("", os.environ["HAMLET_LINK"], "Điện thoại thử")
    check(enrolled.server.startswith("https://"), "enrolled over https: %s" % enrolled.server)
    check(enrolled.certificate_pin is not None and len(enrolled.certificate_pin) == 95, "the pin is kept")
    first = phone.sync(None)
    check(first.server.startswith("wss://"), "synced over wss: %s" % first.server)
    ratings = [s for s in phone.answer_slots(CAMPAIGN, HAMLET) if s.kind == "rating"]
    ids = []
    for i in range(3):
        answers = {s.key: LEVELS[(i + n) % 3] for n, s in enumerate(ratings)}
        answers["so-nguoi"] = str(1 + i)
        ids.append(phone.record(CAMPAIGN, HAMLET, answers))
        phone.submit(ids[-1])
    report = phone.sync(None)
    check(report.newly_acknowledged == 3, "three acknowledged: %s" % report)
    print(json.dumps({"ids": ids}))


if __name__ == "__main__":
    main()
