"""A user's own training loop under deeptui.watch, in a thread of its own: a tiny model with an
`encoder` and a `head` in two parameter groups (lr 0.1 and 0.01), run.step after each optimizer
step, and an evaluation (run.test) every `test_every` steps. The tests steer it from outside, as
the dashboard, attach and send do, and read what it did from its events."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

import deeptui
from deeptui.engine import commands as C
from tests.conftest import EventReader


def tiny_model() -> nn.Module:
    return nn.Sequential(OrderedDict(encoder=nn.Linear(4, 8), act=nn.ReLU(), head=nn.Linear(8, 3)))


class OwnLoop:
    def __init__(self, log_dir, steps: int = 10**9, test_every: int = 0, paused: bool = True, **watch):
        torch.manual_seed(0)
        self.model = tiny_model()
        self.optimizer = torch.optim.SGD(
            [{"params": self.model.encoder.parameters(), "lr": 0.1}, {"params": self.model.head.parameters()}],
            lr=0.01,
            momentum=0.9,
        )
        watch.setdefault("log_every", 2)
        watch.setdefault("freeze", ["encoder"])
        self.run = deeptui.watch(self.model, self.optimizer, name="own", log_dir=log_dir, **watch)
        self.reader = EventReader(self.run)
        self.steps, self.test_every, self.total = 0, test_every, steps
        self.stepped = threading.Event()  # set after each step() returned
        self.blow_up = False  # the next losses are nan
        if paused:  # the first step() waits for a command: the loop is steered between its steps
            self.run.send(C.Pause())
        self.thread = threading.Thread(target=self.train, name="own-loop", daemon=True)
        self.thread.start()

    def train(self) -> None:
        g = torch.Generator().manual_seed(1)
        with self.run:
            for i in range(self.total):
                self.model.train()  # as loops do at each epoch's start; a mode the user set is kept
                x, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
                out = self.model(x)
                loss = F.cross_entropy(out, y) * (math.nan if self.blow_up else 1.0)
                self.run.optimizer.zero_grad()
                loss.backward()
                self.run.optimizer.step()
                ok = self.run.step(loss, batch_size=8, correct=(out.argmax(1) == y).sum())
                self.steps += 1
                self.stepped.set()
                if ok and self.test_every and (i + 1) % self.test_every == 0:
                    self.model.eval()  # as loops evaluate: the mode of the training steps is not this
                    ok = self.run.test(loss.detach() + 0.1, accuracy=((i // self.test_every) % 3) / 3)
                if not ok:
                    break

    def command(self, cmd: C.Command, timeout: float = 60.0):
        """Send one command; its answer (CommandApplied or CommandRejected)."""
        self.run.send(cmd)
        return self.reader.answer(cmd.id, timeout)

    def finish(self, timeout: float = 60.0) -> None:
        if self.run.alive:
            self.run.send(C.Stop(reason="the test ends"))
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the loop did not end"
