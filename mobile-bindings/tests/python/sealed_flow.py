"""A sealed campaign through the generated Python bindings: the app records and submits as for
any campaign; the library seals the answers and comments for the campaign's key.

Run by tests/python.rs with HAMLET_SERVER, HAMLET_CODE, HAMLET_STORE and HAMLET_COMMENT set.
Prints one JSON line: the ids of the responses submitted.
"""

import json
import os
import sys

from hamlet_mobile import HamletCollector

CAMPAIGN = "tin-nhiem-2025"


def check(condition, message):
    if not condition:
        print("FAILED: " + message, file=sys.stderr)
        sys.exit(1)


def main():
    phone = HamletCollector.open(os.environ["HAMLET_STORE"])
    phone.set_fixed_today("2025-06-02")
    phone.enroll(os.environ["HAMLET_SERVER"], os.environ["HAMLET_CODE"], "Điện thoại thử")
    phone.sync(None)
    comment = os.environ["HAMLET_COMMENT"]
    ids = []
    for i in range(5):
        answers = {
            "tin-nhiem/ong-an": ["tin_nhiem_thap", "tin_nhiem"][i % 2],
            "tin-nhiem/ba-binh": "tin_nhiem_cao",
            "y-kien/ong-an": "%s %d" % (comment, i),
        }
        response_id = phone.record(CAMPAIGN, "thon-dong", answers)
        # The phone shows its own draft's answers (from the plaintext it keeps).
        shown = phone.response(response_id).answers
        check(shown["y-kien/ong-an"] == "%s %d" % (comment, i), "the draft reads back: %s" % shown)
        phone.submit(response_id)
        ids.append(response_id)
    report = phone.sync(None)
    check(report.newly_acknowledged == 5, "five acknowledged: %s" % report)
    for response_id in ids:
        check(phone.response(response_id).answers == {}, "forgotten once acknowledged")
    print(json.dumps({"ids": ids}))


if __name__ == "__main__":
    main()
