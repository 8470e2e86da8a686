#!/usr/bin/env python3
"""CPU time (user + system, seconds) a process and all its live descendants have used, from
/proc/<pid>/stat: the server's cost of a load window is the difference of two readings.
Descendants count because MLServer runs its model in worker processes.

usage: cpu_seconds.py PID
"""
import os
import sys

root = int(sys.argv[1])
ticks = os.sysconf("SC_CLK_TCK")
children, cpu = {}, {}
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    try:
        with open(f"/proc/{entry}/stat") as f:
            stat = f.read()
    except OSError:
        continue  # exited while we listed
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    pid, ppid = int(entry), int(fields[1])
    children.setdefault(ppid, []).append(pid)
    cpu[pid] = int(fields[11]) + int(fields[12])  # utime + stime
total, todo = 0, [root]
while todo:
    pid = todo.pop()
    total += cpu.get(pid, 0)
    todo.extend(children.get(pid, []))
print(f"{total / ticks:.2f}")
