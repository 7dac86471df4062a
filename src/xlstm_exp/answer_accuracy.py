"""Accuracy on answer positions (tasks such as formal languages and associative recall), summed
over batches and processes with torchmetrics."""

import torch
from torchmetrics import Metric


class AnswerAccuracy(Metric):
    """Token accuracy over scored targets (not -100), sequence accuracy over sequences with at
    least one, the normalised accuracy (acc - chance) / (1 - chance) of the xLSTM paper, and
    the token accuracy of each group of sequences (e.g. input-length buckets)."""

    full_state_update = False

    def __init__(self, chance: float, groups: list[str]):
        super().__init__()
        self.chance, self.groups = chance, list(groups)
        for name in ("correct", "answers", "correct_sequences", "sequences"):
            self.add_state(name, torch.tensor(0.0), dist_reduce_fx="sum")
        size = max(1, len(self.groups))
        self.add_state("group_correct", torch.zeros(size), dist_reduce_fx="sum")
        self.add_state("group_answers", torch.zeros(size), dist_reduce_fx="sum")

    def update(
        self, predictions: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor | None = None
    ) -> None:
        """`predictions` (B, T) the predicted token ids (only read where something is scored),
        `targets` (B, T) with -100 where nothing is scored, `groups` (B,) the group index of
        each sequence (None: no groups)."""
        scored = targets != -100
        right = (predictions == targets) & scored
        self.correct += right.sum()
        self.answers += scored.sum()
        answered = scored.any(1)
        self.correct_sequences += (right.sum(1) == scored.sum(1))[answered].sum()
        self.sequences += answered.sum()
        if groups is not None:
            self.group_correct.index_add_(0, groups, right.sum(1).to(self.group_correct.dtype))
            self.group_answers.index_add_(0, groups, scored.sum(1).to(self.group_answers.dtype))

    def normalised(self, accuracy: torch.Tensor) -> torch.Tensor:
        return (accuracy - self.chance) / (1 - self.chance)

    def compute(self) -> dict[str, torch.Tensor]:
        """`acc`, `seq_acc`, `norm_acc`, and `norm_acc/<group>` for each group that had
        answers."""
        accuracy = self.correct / self.answers.clamp_min(1)
        results = {
            "acc": accuracy,
            "seq_acc": self.correct_sequences / self.sequences.clamp_min(1),
            "norm_acc": self.normalised(accuracy),
        }
        for index, name in enumerate(self.groups):
            if self.group_answers[index] > 0:
                group_accuracy = self.group_correct[index] / self.group_answers[index]
                results[f"norm_acc/{name}"] = self.normalised(group_accuracy)
        return results
