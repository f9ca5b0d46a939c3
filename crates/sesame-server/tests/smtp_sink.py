#!/usr/bin/env python3
"""A real SMTP server for Sesame's tests: receives mail and writes each
message to a directory, one JSON file per message, atomically (written under
a dot-name, then renamed), so a reader never sees half a message.

Usage: smtp_sink.py --dir DIR [--port PORT] [--reject]

Listens on 127.0.0.1:PORT (0 = any free port) and prints "LISTENING <port>"
on stdout once it accepts connections. With --reject every recipient is
refused with a permanent 550. Exits when its standard input closes, so it
never outlives the test process that started it.

Each file holds {"mail_from", "rcpt_tos", "from", "to", "subject", "text",
"raw"}: the envelope, the decoded headers, the decoded text/plain body and the
message as received.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import sys
import threading
import time

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, directory, reject):
        self.directory = directory
        self.reject = reject
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject:
            return "550 5.1.1 mailbox unavailable (sink in reject mode)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "from": str(msg.get("From", "")),
            "to": str(msg.get("To", "")),
            "subject": str(msg.get("Subject", "")),
            "text": body.get_content() if body is not None else "",
            "raw": raw.decode("utf-8", errors="replace"),
        }
        self.count += 1
        name = f"{time.time_ns()}-{self.count:06d}.json"
        tmp = os.path.join(self.directory, "." + name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.directory, name))
        return "250 OK: queued"


def exit_when_stdin_closes():
    try:
        sys.stdin.read()
    finally:
        os._exit(0)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reject", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)

    handler = Sink(args.dir, args.reject)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", enable_SMTPUTF8=True),
        host="127.0.0.1",
        port=args.port,
    )
    port = server.sockets[0].getsockname()[1]
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    print(f"LISTENING {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
