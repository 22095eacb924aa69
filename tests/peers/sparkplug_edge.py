"""A Sparkplug B edge node (pysparkplug) driven line by line from stdin.

Usage: python sparkplug_edge.py HOST PORT

Publishes NBIRTH for node Plant1/Line1 and DBIRTH for device Filler, prints
"READY", then obeys one command per stdin line:

  speed V      NDATA   Line/Speed (float)
  current V    DDATA   Motor/Current (int16, two's complement on the wire)
  temp V       DDATA   Temp (double)
  gap          skip one sequence number (the next message shows a gap)
  ddeath       deregister the device (DDEATH)
  die          exit without disconnecting: the broker publishes the will (NDEATH)

Every NCMD "Node Control/Rebirth" it receives is reported as "REBIRTH" on
stdout. Each command is acknowledged with "OK <command>".
"""

import os
import sys
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


def on_ncmd(_node, message):
    for m in message.payload.metrics:
        if m.name == "Node Control/Rebirth" and m.value:
            say("REBIRTH")


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    edge = spb.EdgeNode(
        GROUP,
        NODE,
        [metric("Line/Speed", spb.DataType.FLOAT, 1.5)],
        cmd_callback=on_ncmd,
    )
    edge.register(
        spb.Device(
            DEVICE,
            [
                metric("Motor/Current", spb.DataType.INT16, -12),
                metric("Temp", spb.DataType.DOUBLE, 41.5),
                metric("Running", spb.DataType.BOOLEAN, True),
                metric("Recipe", spb.DataType.STRING, "LOT-7"),
            ],
        )
    )
    edge.connect(host, port=port, keepalive=5, blocking=False)
    deadline = time.time() + 20
    while not edge._connected and time.time() < deadline:
        time.sleep(0.02)
    if not edge._connected:
        say("FAILED to connect")
        sys.exit(1)
    time.sleep(0.2)
    say("READY")
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "speed":
            edge.update([metric("Line/Speed", spb.DataType.FLOAT, float(cmd[1]))])
        elif cmd[0] == "current":
            edge.update_device(DEVICE, [metric("Motor/Current", spb.DataType.INT16, int(cmd[1]))])
        elif cmd[0] == "temp":
            edge.update_device(DEVICE, [metric("Temp", spb.DataType.DOUBLE, float(cmd[1]))])
        elif cmd[0] == "gap":
            _ = edge._seq  # consume one sequence number without publishing
        elif cmd[0] == "ddeath":
            edge.deregister(DEVICE)
        elif cmd[0] == "die":
            say("OK die")
            os._exit(0)
        else:
            say("UNKNOWN " + cmd[0])
            continue
        time.sleep(0.05)
        say("OK " + cmd[0])


if __name__ == "__main__":
    main()
