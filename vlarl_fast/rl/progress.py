"""Progress bars (tqdm) with the current phase and throughput; silent on non-zero ranks."""

from __future__ import annotations

import contextlib


class Progress:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bar = None

    @contextlib.contextmanager
    def phase(self, name: str, total: int | None):
        if not self.enabled:
            yield _NullBar()
            return
        from tqdm import tqdm

        bar = tqdm(total=total, desc=name, leave=False, dynamic_ncols=True)
        try:
            yield _Bar(bar)
        finally:
            bar.close()

    def set_phase(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_description(text)

    def start(self, done: int, total: int) -> None:
        if self.enabled and self._bar is None and total > done:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=done, desc="grpo", dynamic_ncols=True)

    def iteration(self, step: int, total: int, metrics: dict) -> None:
        if not self.enabled:
            return
        self.start(step - 1, total)
        self._bar.update(1)
        self._bar.set_postfix({
            "succ": f"{metrics.get('rollout/success', float('nan')):.2f}",
            "kept": int(metrics.get("rollout/groups_kept", 0)),
            "env_sps": f"{metrics.get('perf/env_steps_per_s', 0):.0f}",
            "tok_s": f"{metrics.get('perf/update_tokens_per_s', 0):.0f}",
            "roll_s": f"{metrics.get('time/rollout_s', 0):.1f}",
            "upd_s": f"{metrics.get('time/update_s', 0):.1f}",
        })

    def write(self, text: str) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        tqdm.write(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _Bar:
    def __init__(self, bar):
        self.bar = bar

    def update(self, n: int = 1, **postfix) -> None:
        self.bar.update(n)
        if postfix:
            self.bar.set_postfix(postfix)


class _NullBar:
    def update(self, n: int = 1, **postfix) -> None:
        pass
