"""Random prompts of known token length.

The simulated engine counts one token per whitespace-separated word (or one per id when the
prompt is a list of token ids), so a text prompt of N words is exactly N tokens there. A real
engine's tokenizer turns each of these common words into about one token; for exact lengths on
a real engine use ``--prompt-format token-ids`` (the OpenAI completions API accepts a list of
token ids as ``prompt``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Short, common English words: one token each in the usual BPE vocabularies (with the space).
WORDS = (
    "the of and to in is was for on that with as by at from his her are be this have not "
    "but had they which one you were all we an their has been there can more when will who "
    "would no out up so said what its about into than them only other new some could time "
    "these two may first then do any like my now over such our man me even most made after "
    "also did many before must through back years where much your way well down should "
    "because each just those people how too little state good very make world still own see "
    "men work long get here between both life being under never day same another know while "
    "last might us great old year off come since against go came right used take three"
).split()

# Token ids that exist in every common vocabulary and are not special tokens.
TOKEN_ID_RANGE = (1000, 20000)


@dataclass(frozen=True)
class Prompt:
    prompt: str | list[int]
    input_len: int
    output_len: int


def sample_lengths(rng: random.Random, n: int, length: int, ratio: float) -> list[int]:
    """``n`` lengths uniform over the integers in ``[ratio * length, length]`` (at least 1)."""
    low = max(1, int(ratio * length))
    return [rng.randint(low, length) for _ in range(n)]


def random_prompts(
    n: int, isl: int, osl: int, ratio: float, seed: int, token_ids: bool = False
) -> list[Prompt]:
    """``n`` prompts with input and output lengths drawn independently, reproducible by seed."""
    rng = random.Random(seed)
    inputs = sample_lengths(rng, n, isl, ratio)
    outputs = sample_lengths(rng, n, osl, ratio)
    prompts = []
    for input_len, output_len in zip(inputs, outputs):
        if token_ids:
            body: str | list[int] = [rng.randrange(*TOKEN_ID_RANGE) for _ in range(input_len)]
        else:
            body = " ".join(rng.choices(WORDS, k=input_len))
        prompts.append(Prompt(body, input_len, output_len))
    return prompts
