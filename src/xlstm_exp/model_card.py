"""The README.md model card of an exported model: what it is, what it was trained on, how it
scored, and how to load and evaluate it."""

from huggingface_hub import ModelCard, ModelCardData

from xlstm_exp.models.factory import parameter_counts
from xlstm_exp.models.language_model import LanguageModel
from xlstm_exp.readable import readable_count
from xlstm_exp.trained_model import TrainedModel

TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

A causal language model of {{ cell }} cells in {{ block }} blocks, trained with xlstm-exp.

| | |
|---|---|
{% for name, value in facts %}| {{ name }} | {{ value }} |
{% endfor %}
## Scores

{{ scores_note }}

{% if scores %}| metric | validation | test |
|---|---|---|
{% for name, val, test in scores %}| {{ name }} | {{ val }} | {{ test }} |
{% endfor %}{% endif %}
## Use

```python
from xlstm_exp import LanguageModel

model = LanguageModel.from_pretrained("<this folder or Hub repo>")
```

```bash
python generate.py ckpt_path=<this folder> prompt="The history of"
python eval.py ckpt_path=<this folder>
python -m xlstm_exp.lm_eval --model_args pretrained=<this folder> --tasks wikitext_stream
```
"""

SCORES = [
    ("loss (nats per token)", "loss"),
    ("perplexity per token", "ppl"),
    ("perplexity per word", "word_ppl"),
    ("bits per byte", "bpb"),
    ("whole-split perplexity per word", "stateful_word_ppl"),
    ("answer accuracy", "acc"),
    ("answer accuracy above chance (normalised)", "norm_acc"),
]


def shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def model_card(trained: TrainedModel) -> ModelCard:
    model: LanguageModel = trained.model
    config = trained.run_config
    data = config.data if config is not None else {}
    data_label = str((config.get("choices") or {}).get("data", "")) if config is not None else ""
    if data.get("name"):
        data_label += f" ({data.name})"
    # Runs on built-in data carry a tokenizer config they never used.
    trained_tokenizer = config is not None and trained.tokenizer is not None
    tokenizer = config.get("tokenizer") if trained_tokenizer else None
    counts = parameter_counts(model)
    facts = [
        ("cell", "+".join(dict.fromkeys(model.layer_mixers))),
        ("block", model.block_label),
        ("layers", len(model.blocks)),
        ("width (d_model)", model.d_model),
        ("parameters", f"{counts['params']:,} ({counts['params_non_embedding']:,} non-embedding)"),
        ("vocabulary", f"{model.embedding.num_embeddings:,} tokens"),
        ("data", data_label or "unknown"),
        ("tokenizer", f"{tokenizer.kind} (tokenizer.json)" if tokenizer else "built-in words"),
        ("context length in training", data.get("context_length", "unknown")),
        ("tokens trained", readable_count(trained.train_tokens or 0)),
        ("optimizer steps", trained.global_step),
    ]
    metrics = trained.metrics or {}
    scores, note = [], "No metrics.json was found next to the checkpoint."
    if metrics:
        if metrics.get("best_step") not in (None, trained.global_step):
            note = (
                f"The run's metrics.json scores step {metrics['best_step']} (its best "
                f"checkpoint); this export is step {trained.global_step}, so run eval.py on it "
                "for its own scores."
            )
        else:
            note = "From the run's metrics.json (the whole validation and test splits)."
            for label, key in SCORES:
                val, test = metrics.get(f"val/{key}"), metrics.get(f"test/{key}")
                if val is not None or test is not None:
                    scores.append((label, shown(val if val is not None else "-"), shown(test)))
    card_data = ModelCardData(
        library_name="xlstm-exp",
        tags=["xlstm", "text-generation", *dict.fromkeys(model.layer_mixers)],
        datasets=["Salesforce/wikitext"] if "wikitext" in data_label else None,
    )
    return ModelCard.from_template(
        card_data,
        template_str=TEMPLATE,
        title=f"{facts[0][1]} ({readable_count(counts['params'])} parameters)",
        cell=facts[0][1],
        block=model.block_label,
        facts=facts,
        scores=scores,
        scores_note=note,
    )
