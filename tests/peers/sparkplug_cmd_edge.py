"""A Sparkplug B edge node (pysparkplug) that takes setpoint commands.

Usage: python sparkplug_cmd_edge.py HOST PORT

Publishes NBIRTH for node Plant1/Line1 with "Speed SP" (Float) and DBIRTH
for device Filler with "Temp SP" (Int16), prints "READY", then for every
NCMD/DCMD metric it receives (decoded by pysparkplug, not by the twin's
code) prints one line

  NCMD <name> <DATATYPE> <value>
  DCMD <name> <DATATYPE> <value>

and takes the value: it publishes it back as NDATA/DDATA, so the twin's
read-back tags follow. "Node Control/Rebirth" requests are printed as
"REBIRTH". Stdin: "die" exits without disconnecting (the broker sends the
will, NDEATH).
"""

import os
import sys
import threading
import time

import pysparkplug as spb

GROUP, NODE, DEVICE = "Plant1", "Line1", "Filler"


def now():
    return spb.get_current_timestamp()


def metric(name, dtype, value):
    return spb.Metric(timestamp=now(), name=name, datatype=dtype, value=value)


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


EDGE = None


def take(kind, message):
    for m in message.payload.metrics:
        if m.name == "Node Control/Rebirth":
            say("REBIRTH")
            continue
        say(f"{kind} {m.name} {m.datatype.name} {m.value}")
        echo = [metric(m.name, m.datatype, m.value)]
        # Publish from a thread of our own, not paho's callback thread.
        if kind == "NCMD":
            threading.Thread(target=EDGE.update, args=(echo,)).start()
        else:
            threading.Thread(target=EDGE.update_device, args=(DEVICE, echo)).start()


def main():
    global EDGE
    host, port = sys.argv[1], int(sys.argv[2])
    EDGE = spb.EdgeNode(
        GROUP,
        NODE,
        [metric("Speed SP", spb.DataType.FLOAT, 1.5)],
        cmd_callback=lambda _node, message: take("NCMD", message),
    )
    EDGE.register(
        spb.Device(
            DEVICE,
            [metric("Temp SP", spb.DataType.INT16, 1800)],
            cmd_callback=lambda _node, message: take("DCMD", message),
        )
    )
    EDGE.connect(host, port=port, keepalive=5, blocking=False)
    deadline = time.time() + 20
    while not EDGE._connected and time.time() < deadline:
        time.sleep(0.02)
    if not EDGE._connected:
        say("FAILED to connect")
        sys.exit(1)
    time.sleep(0.2)
    say("READY")
    for line in sys.stdin:
        if line.strip() == "die":
            say("OK die")
            os._exit(0)


if __name__ == "__main__":
    main()
