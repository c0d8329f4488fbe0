"""The judge's wording (our own; shared/method.md section 3 fixes the questions, not their text).

Every judgment is one user turn: the image, a line naming the prompt (the shared prefix), then one question. The
clarity and potential questions of PARM share the image and the prompt line, so that prefix is computed once.
"""

from __future__ import annotations

# kind -> question. 'final' is PARM's best-of-N' question, the same as the ORM's outcome question.
QUESTIONS: dict[str, str] = {
    "orm": "Does this image show exactly what the prompt asks for? Answer yes or no.",
    "prm": (
        "This is an unfinished image, partway through being generated. If generation continues well, will the "
        "finished image show what the prompt asks for? Answer yes or no."
    ),
    "clarity": (
        "This is an unfinished image, partway through being generated. Are its objects already clear enough to "
        "tell what the finished image will contain? Answer yes or no."
    ),
    "potential": (
        "This is an unfinished image, partway through being generated. Can it still become an image that shows "
        "what the prompt asks for? Answer yes or no."
    ),
    "reflection": (
        "The image was meant to show what the prompt asks for, but it may not. In one sentence, say what is wrong "
        "(a missing or extra object, a wrong count, a wrong colour, a wrong position)."
    ),
}
QUESTIONS["final"] = QUESTIONS["orm"]
YES_NO_KINDS = ("orm", "final", "prm", "clarity", "potential")


def describe(prompt: str) -> str:
    """The prompt line that opens every question (part of the shared prefix)."""
    return f'The image was generated for the prompt: "{prompt}".\n'
