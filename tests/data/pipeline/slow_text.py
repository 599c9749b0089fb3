"""A procedural text provider that takes its time, so a test can kill a build mid-way."""

import time

from rewardkit.data.pipeline.procedural import ProceduralText


class SlowText(ProceduralText):
    def __init__(self, seconds: float = 0.3) -> None:
        self.seconds = seconds

    def scene(self, plan):
        time.sleep(self.seconds)
        return super().scene(plan)
