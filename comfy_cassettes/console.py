"""Console logging that can never stall the server: a writer thread writes the lines, the event loop only queues.

A test harness often spawns ``serve`` with stdout and stderr piped and never reads them (Node's
``child_process.spawn`` default, Ruby's ``Open3``). Once the pipe's buffer (64 KiB on Linux) is full, a write
blocks; written from the event loop, it would stop every answer. Here the loop hands each record to a bounded queue
without waiting: the writer thread is the one that waits on a full pipe, a record that finds the queue full is
dropped, and the next line written says how many were.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import threading

# Records waiting for the writer, past the pipe's own buffer: a burst a console that reads at all soon takes in
# (a refused prompt's line is at most about a kilobyte: a quarter of a megabyte held at worst).
QUEUE_LIMIT = 256
# How long a stopping server waits for its last lines to be written (a pipe nobody reads never takes them).
DRAIN_LIMIT = 1.0

# Each unblocked logger with its own handlers and the listener writing to them.
_writers: list[tuple[logging.Logger, list[logging.Handler], logging.handlers.QueueListener]] = []


class DroppingQueueHandler(logging.handlers.QueueHandler):
    """Queues a record without ever waiting; counts what a full queue turned away and says so once there is room."""

    def __init__(self, records: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(records)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Unlike QueueHandler's, keep msg and args: the writer's own formatters read them (uvicorn's access log).
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        # (called under the handler's lock: the count needs no lock of its own)
        try:
            if self.dropped:
                note = logging.LogRecord(record.name, logging.WARNING, __file__, 0,
                                         "%d log lines dropped: the console did not take them in time (an unread pipe?)",
                                         (self.dropped,), None)
                self.queue.put_nowait(note)
                self.dropped = 0
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


def unblock(logger: logging.Logger) -> None:
    """Route ``logger``'s own handlers through a writer thread (once; a logger with no handler is left alone)."""
    handlers = list(logger.handlers)
    if not handlers or any(isinstance(h, DroppingQueueHandler) for h in handlers):
        return
    records: queue.Queue[logging.LogRecord] = queue.Queue(QUEUE_LIMIT)
    listener = logging.handlers.QueueListener(records, *handlers, respect_handler_level=True)
    logger.handlers = [DroppingQueueHandler(records)]
    listener.start()
    _writers.append((logger, handlers, listener))


def drain() -> None:
    """Give the writer threads up to DRAIN_LIMIT seconds each to write what is queued (a stopping server's last
    lines) and hand the loggers their own handlers back; a writer stuck on a pipe nobody reads is left behind (its
    thread is a daemon)."""
    while _writers:
        logger, handlers, listener = _writers.pop()
        logger.handlers = handlers
        try:
            listener.enqueue_sentinel()
        except queue.Full:
            continue
        thread = getattr(listener, "_thread", None)
        if isinstance(thread, threading.Thread):
            thread.join(DRAIN_LIMIT)
