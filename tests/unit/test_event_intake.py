"""The bounded queue between the perf-buffer poller thread and the event
loop (daemon/intake.py), on a real asyncio loop and a real thread."""

import asyncio
import threading

from pmip6ctl.daemon.intake import EventIntake


def run_with(intake: EventIntake, feed, after=None) -> None:
    async def main():
        loop = asyncio.get_running_loop()
        intake.bind(loop.call_soon_threadsafe, loop.call_soon)
        thread = threading.Thread(target=feed)
        thread.start()
        thread.join()
        if after:
            after(loop)
        for _ in range(50):
            await asyncio.sleep(0)
    asyncio.run(main())


def test_a_full_queue_drops_the_newest_and_counts_them():
    handled = []
    intake = EventIntake(handled.append, capacity=3)
    run_with(intake, lambda: [intake.put(n) for n in range(5)])
    assert handled == [0, 1, 2] and (intake.dropped, intake.taken, intake.depth) == (2, 3, 0)
    run_with(intake, lambda: intake.put(5))                   # room again once drained
    assert handled == [0, 1, 2, 5]


def test_a_long_queue_is_taken_in_batches_with_the_loop_free_in_between():
    handled = []
    intake = EventIntake(handled.append, capacity=100, batch=4)
    run_with(intake, lambda: [intake.put(n) for n in range(10)],
             after=lambda loop: loop.call_soon(lambda: handled.append("control socket")))
    # the first batch went, then what else was ready (a control request), then the rest
    assert handled == [0, 1, 2, 3, "control socket", 4, 5, 6, 7, 8, 9]


def test_a_failing_event_does_not_stop_the_others():
    handled = []

    def handle(event):
        if event == 1:
            raise ValueError("a bad one")
        handled.append(event)
    intake = EventIntake(handle, capacity=10)
    run_with(intake, lambda: [intake.put(n) for n in range(3)])
    assert handled == [0, 2]


def test_perf_buffer_losses_are_counted():
    intake = EventIntake(lambda event: None)
    intake.on_lost(7)
    intake.on_lost(2)
    assert intake.lost == 9
