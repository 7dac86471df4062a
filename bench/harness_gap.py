"""What separates lm-eval's two WikiText tasks for one model: the test split scored as one
stream (`wikitext_stream`), then as the stock task's articles with the same text and words,
then detokenized, then with the stock task's word count (`wikitext_articles`).

    python bench/harness_gap.py <exported folder> --data_path <WikiText folder> \\
        --data_name wikitext-2-v1 [--batch_size 8]

Prints the word perplexity of each step as JSON.
"""

import argparse
import json
import math
import re

from lm_eval.api.instance import Instance
from lm_eval.tasks.wikitext.preprocess_wikitext import wikitext_detokenizer

from xlstm_exp.data.text_counts import as_line, text_counts
from xlstm_exp.lm_eval import XLSTMLM
from xlstm_exp.lm_eval.tasks.wikitext_docs import articles, split_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="an exported model folder or a .ckpt")
    parser.add_argument("--data_path", required=True, help="a Hub id or a Hub-layout folder")
    parser.add_argument("--data_name", default="wikitext-2-v1")
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args()

    rows = split_rows(args.data_path, args.data_name)["test"]
    pages = articles(rows)
    lm = XLSTMLM(pretrained=args.folder, batch_size=args.batch_size)

    def loglikelihood(texts: list[str]) -> float:
        requests = [
            Instance(request_type="loglikelihood_rolling", doc={}, arguments=(text,), idx=i)
            for i, text in enumerate(texts)
        ]
        return sum(lm.loglikelihood_rolling(requests, disable_tqdm=True))

    words = text_counts(rows)["words"]
    harness_words = sum(len(re.split(r"\s+", page)) for page in pages)
    stream = loglikelihood(["".join(as_line(row) for row in rows)])
    raw = loglikelihood(pages)
    detokenized = loglikelihood([wikitext_detokenizer({"page": page}) for page in pages])
    steps = {
        "stream, project words": math.exp(-stream / words),
        "articles, same text and words": math.exp(-raw / words),
        "articles detokenized, project words": math.exp(-detokenized / words),
        "articles detokenized, harness words (wikitext_articles)": math.exp(
            -detokenized / harness_words
        ),
    }
    counts = {"project_words": words, "harness_words": harness_words, "articles": len(pages)}
    print(json.dumps({**counts, "test_word_ppl": steps}, indent=1))


if __name__ == "__main__":
    main()
