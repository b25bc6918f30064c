"""Log lines about bad input, at a rate a disk survives."""

import logging

from pmip6ctl.logthrottle import LogThrottle


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def logged(throttle: LogThrottle):
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())
    logger = logging.getLogger("pmip6ctl.test.throttle")
    logger.propagate = False
    logger.handlers[:] = [Keep()]
    logger.handlers[0].addFilter(throttle)
    return logger, records


def test_a_flood_of_one_kind_of_line_is_cut_to_its_rate_and_the_rest_counted():
    clock = Clock()
    throttle = LogThrottle(rate=1.0, burst=3, clock=clock)
    log, records = logged(throttle)
    for n in range(100):
        log.warning("RO message from %s rejected", f"2001:db8::{n}")
    log.warning("another kind of line")                     # has its own budget
    assert records == ["RO message from 2001:db8::0 rejected", "RO message from 2001:db8::1 rejected",
                       "RO message from 2001:db8::2 rejected", "another kind of line"]
    clock.now += 1.0
    log.warning("RO message from %s rejected", "2001:db8::aa")
    assert records[-1] == "RO message from 2001:db8::aa rejected [97 more like this suppressed]"
    assert throttle.suppressed_total == 97


def test_errors_always_pass():
    throttle = LogThrottle(rate=1.0, burst=1, clock=Clock())
    log, records = logged(throttle)
    for _ in range(5):
        log.error("the state file cannot be written")
    assert len(records) == 5
