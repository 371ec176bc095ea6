"""Drives the collector library through its generated Python bindings, as a phone app would.

Run by tests/python.rs with the bindings and the library in PYTHONPATH, and with
HAMLET_SERVER (the server's address), HAMLET_CODE (a one-time enrollment code) and
HAMLET_STORE (a file for the local store) set. Prints one JSON line with what it did.
"""

import json
import os
import sys

from hamlet_mobile import HamletCollector, HamletError, ResponseFilter, TallyInput

CAMPAIGN = "tin-nhiem-2025"
HAMLETS = ["thon-dong", "thon-tay"]
LEVELS = ["tin_nhiem_cao", "tin_nhiem", "tin_nhiem_thap"]


def check(condition, message):
    if not condition:
        print("FAILED: " + message, file=sys.stderr)
        sys.exit(1)


def main():
    phone = HamletCollector.open(os.environ["HAMLET_STORE"])
    # A day within the campaign's schedule, so that what is recorded counts.
    phone.set_fixed_today("2025-06-02")
    check(phone.enrollment() is None, "a new store is not enrolled")
    # One store, one writer: a second opener (a background job, the app opening it twice) is
    # told the store is in use, and the first keeps working.
    try:
        HamletCollector.open(os.environ["HAMLET_STORE"])
        check(False, "a store already open must not open a second time")
    except HamletError.StoreInUse as e:
        check("in use by another program" in str(e), "the error says why: %s" % e)
    check(phone.set_aside() == [], "nothing set aside in a new store")
    try:
        phone.counts()
        check(False, "counts before enrollment must fail")
    except HamletError.NotEnrolled:
        pass

    enrolled = phone.enroll(os.environ["HAMLET_SERVER"], os.environ["HAMLET_CODE"], "Điện thoại thử")
    check(enrolled.collector == "nguyen-van-a", "enrolled as the collector the server named")
    check(enrolled.has_token, "the device holds a token")
    check(sorted(enrolled.campaigns[0].hamlets) == HAMLETS, "both hamlets assigned")

    first = phone.sync(None)
    check(first.documents == 3, "a campaign document and two ledgers: %d" % first.documents)
    campaigns = phone.campaigns()
    check(campaigns[0].downloaded and campaigns[0].state == "open", "the campaign arrived")

    slots = phone.answer_slots(CAMPAIGN, HAMLETS[0])
    ratings = [s for s in slots if s.kind == "rating"]
    check(len(ratings) == 3 and all(s.required for s in ratings), "three required ratings")
    check(ratings[0].choices[0].label_vi == "Tín nhiệm cao", "Vietnamese labels come through")

    # A wrong answer names its question.
    try:
        phone.record(CAMPAIGN, HAMLETS[0], {"so-nguoi": "0"})
        check(False, "an out-of-range answer must be refused")
    except HamletError.Invalid as e:
        check("so-nguoi" in str(e), "the error names the question: %s" % e)

    ids = []
    for i in range(50):
        answers = {s.key: LEVELS[(i + n) % 3] for n, s in enumerate(ratings)}
        answers["so-nguoi"] = str(1 + i % 7)
        answers["du-hop"] = "có" if i % 2 else "không"
        ids.append(phone.record(CAMPAIGN, HAMLETS[i % 2], answers))
    before = phone.counts()
    check(before.drafts == 50 and before.recorded_today == 50, "fifty drafts: %s" % before)
    for response_id in ids:
        phone.submit(response_id)
    pending = phone.counts()
    check(pending.pending == 50 and pending.acknowledged == 0, "fifty awaiting the server: %s" % pending)

    # A tally, and a response listed by filter.
    tally = phone.record_tally(TallyInput(id=None, campaign=CAMPAIGN, hamlet=HAMLETS[1], issued=30, returned=30,
                                          valid=29, invalid=1, counts={"tin-nhiem/ong-an/tin_nhiem": 20}))
    check(len(phone.tallies(CAMPAIGN, HAMLETS[1])) == 1, "the tally is listed: " + tally)
    in_first = phone.responses(ResponseFilter(campaign=None, hamlet=HAMLETS[0], status="submitted",
                                              recorded_on=None, mine_only=True))
    check(len(in_first) == 25, "25 submitted in the first hamlet: %d" % len(in_first))

    report = phone.sync(None)
    after = phone.counts()
    check(report.newly_acknowledged == 50, "fifty acknowledged: %s" % report)
    check(after.pending == 0 and after.acknowledged == 50, "nothing left pending: %s" % after)
    check(report.changes_sent >= 101, "fifty records, fifty submissions and a tally sent: %s" % report)
    check(all(r.acknowledged for r in phone.responses(ResponseFilter(campaign=None, hamlet=None, status=None,
                                                                        recorded_on=None, mine_only=True))),
          "every response shows acknowledged")

    # Closed, the store opens again, with everything in it.
    del phone
    import gc
    gc.collect()
    reopened = HamletCollector.open(os.environ["HAMLET_STORE"])
    check(reopened.counts().acknowledged == 50, "the store reopens whole after it is closed")

    print(json.dumps({"ids": ids, "bytes_sent": report.bytes_sent, "round_trips": report.round_trips}))


if __name__ == "__main__":
    main()
