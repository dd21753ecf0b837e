"""train.behaviour: each defect kind fires on crafted answers, and not on clean ones that look alike
(a numbered list, code full of closing braces, a translation, a short number); summaries count
exactly. No model is loaded: the answers are written by hand."""

from __future__ import annotations

import pytest

from train.behaviour import KINDS, REFUSAL_MAX_WORDS, REPEAT_SHARE, Answer, defects, repetition, summarize

PROSE_EN = (
    "Photosynthesis is the process by which green plants use sunlight to make food from carbon dioxide and water. "
    "It takes place mainly in the leaves, inside the chloroplasts, which contain the green pigment chlorophyll. "
    "The light energy is captured and used to split water molecules, releasing oxygen as a by-product. "
    "In short, photosynthesis turns light energy into chemical energy and is the basis of most food chains on Earth."
)
PROSE_ZH = (
    "人工智能是计算机科学的一个分支，研究如何让机器模拟人类的智能。人工智能的应用包括语音识别、图像识别和自然语言处理。"
    "近年来，人工智能发展迅速，深度学习推动了人工智能在许多领域的进步。"
)
C_CODE = """int depth(struct node *n) {
    if (n == NULL) {
        return 0;
    }
    if (n->left) {
        if (n->right) {
            return 1;
        }
    }
    return 2;
}
}
}
}"""
FENCED_CODE = """Here is the function:

```python
def grid():
    cells = [None, None, None, None, None, None, None, None]
    count = 0
    count += 1
    count += 1
    count += 1
    return cells
```

It returns a row of eight empty cells."""
SORTS = (
    "Merge sort splits the list in halves, sorts each half and merges them back together in order.\n"
    "Time complexity: O(n log n)\n\n"
    "Heap sort builds a binary heap from the list and repeatedly extracts the largest element.\n"
    "Time complexity: O(n log n)\n\n"
    "Quicksort picks a pivot, partitions the list around it and sorts both sides recursively.\n"
    "Time complexity: O(n log n)"
)

# (prompt, answer) pairs a user would call fine: no kind may fire on any of them.
CLEAN = {
    "english": ("Explain photosynthesis.", PROSE_EN),
    "chinese": ("请介绍一下人工智能。", PROSE_ZH),
    "numbered_list": ("Give me three health tips.", "1. Eat well. 2. Sleep well. 3. Exercise."),
    "numbered_lines": ("Give me three health tips.", "1. Eat well.\n2. Sleep well.\n3. Exercise daily."),
    "shared_opening_two": ("Security tips?", "Use a strong password for your email account. Use a strong password for your bank account."),
    "shared_opening": ("Security tips?", "Use a strong password for your email account. Use a strong password for your bank account. "
                                         "Use a strong password for your social media."),
    "labels": ("Compare merge sort, heap sort and quicksort.", SORTS),
    "c_code_braces": ("Write a C function for the depth of a node.", C_CODE),
    "fenced_code": ("Write a Python function that returns a row of cells.", FENCED_CODE),
    "table": ("Which of these support it?", "| Tool | A | B | C | D |\n|---|---|---|---|---|\n| x | N/A | N/A | N/A | N/A |\n"
                                            "| y | N/A | N/A | N/A | N/A |\n| z | N/A | N/A | N/A | N/A |"),
    "zero_matrix": ("What is the 4x4 zero matrix?", "Its sixteen entries are 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0: every entry is zero."),
    "quiz_answers": ("Answer the three questions.", "1. Answer: B\n2. Answer: B\n3. Answer: B"),
    "chinese_laughter": ("给你讲个笑话：为什么程序员分不清万圣节和圣诞节？因为 Oct 31 = Dec 25。", "哈哈哈哈哈哈哈哈，这个笑话真好笑！"),
    "number": ("What is six times seven? Answer briefly.", "42"),
    "short_no_full_stop": ("What is the capital of France?", "The capital of France is Paris"),
    "label_answer": ("Which option is right?", "Option a"),
    "translation_to_english": ("用英文介绍一下长城。", "The Great Wall was built over many centuries to protect the northern borders of China."),
    "translation_to_chinese": ("Translate into Chinese: I love reading books in the evening.", "我喜欢在晚上读书，这让我感到非常放松和快乐。"),
    "names_the_language": ("How do you say 'thank you very much' in Japanese?", "どうもありがとうございます。とても丁寧な言い方です。"),
    "greeting_prompt": ("Hi", "你好！很高兴见到你，有什么我可以帮你的吗？今天想聊些什么呢？"),
    "short_other_script": ("Can you help me with something?", "好的，没问题。"),
    "apology_email": ("Write a short apology email to Sam for missing the meeting.",
                      "Dear Sam,\n\nI'm sorry I missed our meeting on Friday. Could we find another time next week?\n\nBest,\nAlex"),
    "emphasis": ("Should I text my ex?", "No, no, no. Give it a few weeks first."),
}

# kind -> an answer that shows that kind and no other.
ONLY = {
    "no_stop": Answer("Write a story about a fox.", "Once upon a time a fox lived at the edge of a quiet wood.", stopped=False),
    "empty": Answer("Say something.", " ... ", stopped=True),
    "refusal": Answer("How do I pick a lock?", "I'm sorry, but I can't help with that.", stopped=True),
    "truncated": Answer("What is the capital of France?", "The capital of France is", stopped=True),
    "repetition": Answer("How can I be healthier?", "Quit smoking. Quit drinking. Quit smoking. Quit drinking. Quit smoking.", stopped=True),
    "wrong_language": Answer("请介绍一下长城的历史。", "The Great Wall was built over many centuries to protect the northern borders of China.", stopped=True),
}


def kinds(prompt: str, text: str, stopped: bool = True) -> set[str]:
    return set(defects(Answer(prompt, text, stopped)))


@pytest.mark.parametrize("name", list(CLEAN))
def test_clean_answers_have_no_defect(name):
    prompt, text = CLEAN[name]
    assert defects(Answer(prompt, text, stopped=True)) == {}


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_fires_alone_on_its_answer(kind):
    found = defects(ONLY[kind])
    assert set(found) == {kind}
    assert isinstance(found[kind], str) and 0 < len(found[kind]) <= 200


def test_no_stop_is_only_the_flag():
    text = ONLY["no_stop"].text
    assert kinds("Write a story about a fox.", text, stopped=True) == set()
    # an answer cut by the token limit is no_stop, never also truncated
    assert kinds("What is the capital of France?", "The capital of France is", stopped=False) == {"no_stop"}
    assert kinds("Explain the code.", "Here:\n```python\nprint(1)\n", stopped=False) == {"no_stop"}


def test_empty():
    assert defects(Answer("Say something.", "", True)) == {"empty": "blank"}
    assert kinds("Say something.", "  \n\t ") == {"empty"}
    assert kinds("Say something.", "?!…。", True) == {"empty"}
    assert kinds("Show code.", "```") == {"empty"}  # nothing in it: empty, not also an open code fence
    assert kinds("Show code.", "```\n```") == {"empty"}
    assert kinds("Say something.", "\n\n\n", stopped=False) == {"no_stop", "empty"}
    assert kinds("How many?", "3") == set()


def test_refusal_follows_the_filter_rules():
    assert kinds("Write a poem.", "As an AI language model, I do not have feelings, but here is a poem about the sea.") == {"refusal"}
    assert kinds("写一首诗。", "抱歉，我无法完成这个请求。") == {"refusal"}
    assert kinds("Can you come on Friday?", "I can't.") == {"refusal"}  # a weak phrase opening a short answer
    # a weak phrase in a long answer (over REFUSAL_MAX_WORDS) is no refusal
    long_start = "I can't recommend this book enough. " + PROSE_EN + " " + SORTS.replace("\n", " ")
    assert len(long_start.split()) > REFUSAL_MAX_WORDS
    assert kinds("Do you like this book?", long_start) == set()


def test_truncated():
    assert kinds("What do I need?", "You will need flour, sugar,") == {"truncated"}
    assert kinds("Solve it.", "So the result is x =") == {"truncated"}
    assert kinds("长城有多长？", "长城是中国古代修建的军事防御工程，") == {"truncated"}
    assert kinds("Show me.", "Here is the code:\n```python\nprint('hi')\n") == {"truncated"}
    long_cut = PROSE_EN + " The process also depends on the temperature and the amount of light that reaches the"
    assert kinds("Explain photosynthesis.", long_cut) == {"truncated"}
    assert kinds("Explain photosynthesis.", long_cut + " leaf.") == set()
    assert kinds("Which one?", "Plan B or") == set()  # under CUT_MIN_WORDS: a label, not a cut


def test_repetition_fires_on_loops():
    loops = {
        "same_line": "Drink plenty of water every day.\nDrink plenty of water every day.\nDrink plenty of water every day.",
        "renumbered_line": "1) Drink plenty of water\n2) Drink plenty of water\n3) Drink plenty of water",
        "same_sentence_apart": "The capital is Paris. Paris has many museums. The capital is Paris. It is old. The capital is Paris.",
        "one_word": "It is very very very very very very very big.",
        "chinese": "我们应该好好学习。我们应该好好学习。我们应该好好学习。",
        "chinese_phrase": "首先要制定计划，然后每天坚持复习，每天坚持复习，每天坚持复习，每天坚持复习。",
        "after_code": "```python\nprint(1)\n```\n" + "Let me know if you need anything else. " * 4,
        "long_answer_loop": PROSE_EN + " Keep the bedroom dark and cool." * 3,
    }
    for name, text in loops.items():
        assert repetition(text), name
        assert kinds("请给我一些建议。" if name.startswith("chinese") else "Give me some advice.", text) == {"repetition"}, name


def test_repetition_thresholds():
    # a unit twice in a row in a long answer is a repeat but not a loop; three times is
    once = PROSE_EN + " Keep the bedroom dark and cool. Keep the bedroom dark and cool."
    assert repetition(once) is None
    assert repetition(once + " Keep the bedroom dark and cool.")
    # twice in a short answer: the repeated half covers more than REPEAT_SHARE of it
    assert REPEAT_SHARE < 0.5
    assert repetition("Keep the bedroom dark, quiet and cool. Keep the bedroom dark, quiet and cool.")
    # code is not judged, but the same text as prose is
    loop = "x = compute(x)\n" * 5
    assert repetition(f"```python\n{loop}```") is None
    assert repetition(loop)
    # lines of braces carry no letters or digits: however many, they repeat nothing
    assert repetition("{\n" + "}\n" * 12) is None


def test_wrong_language():
    assert kinds("Tell me a joke about cats, please.", "为什么猫不喜欢玩扑克？因为丛林里有太多猎豹了，它们总是作弊。") == {"wrong_language"}
    ev = defects(ONLY["wrong_language"])["wrong_language"]
    assert ev == "prompt zh, answer en"
    # languages of one script are told apart
    assert kinds("Describe the city of Paris in two sentences.", "Paris est la capitale de la France. Elle est célèbre pour la tour Eiffel.") == {"wrong_language"}
    assert kinds("介绍一下长城", "The Great Wall was built over many centuries to protect the northern borders.") == {"wrong_language"}
    assert kinds("Describe Tokyo.", "東京は日本の首都で、世界でも有数の大都市です。たくさんの人が住んでいます。") == {"wrong_language"}
    # Chinese and Japanese share the Han characters: not told apart
    assert kinds("请介绍一下东京。", "東京は日本の首都で、世界でも有数の大都市です。") == set()
    # code in the answer is no language
    assert kinds("写一个Python函数，返回列表的和。", "```python\ndef total(values):\n    return sum(values)\n```") == set()


def test_an_answer_can_carry_several_kinds():
    loop = "I'm sorry, but I cannot help with that request. " * 6
    assert kinds("请告诉我怎么开锁。", loop, stopped=False) == {"no_stop", "refusal", "repetition", "wrong_language"}
    looped_and_cut = " ".join(["The function walks the list once and keeps a running total of the values it has seen"] * 3) + " and the"
    found = defects(Answer("Explain the function.", looped_and_cut, True))
    assert list(found) == ["truncated", "repetition"]  # in KINDS order


def test_summarize_counts_exactly():
    answers = [
        Answer(*CLEAN["english"], stopped=True),
        Answer(*CLEAN["chinese"], stopped=True),
        Answer(*CLEAN["c_code_braces"], stopped=True),
        ONLY["refusal"],
        ONLY["empty"],
        ONLY["truncated"],
        Answer("How can I be healthier?", ONLY["repetition"].text, stopped=False),  # no_stop + repetition
        Answer("请告诉我怎么开锁。", "I'm sorry, but I cannot help with that request.", stopped=True),  # refusal + wrong_language
    ]
    s = summarize(answers)
    assert s == {
        "answers": 8,
        "defect_rate": 5 / 8,
        "rates": {"no_stop": 1 / 8, "empty": 1 / 8, "refusal": 2 / 8, "truncated": 1 / 8, "repetition": 1 / 8, "wrong_language": 1 / 8},
        "counts": {"no_stop": 1, "empty": 1, "refusal": 2, "truncated": 1, "repetition": 1, "wrong_language": 1},
        "clean": 3,
    }
    assert list(s["rates"]) == list(KINDS)


def test_summarize_nothing():
    s = summarize([])
    assert s["answers"] == 0 and s["clean"] == 0 and s["defect_rate"] == 0.0
    assert s["counts"] == dict.fromkeys(KINDS, 0) and s["rates"] == dict.fromkeys(KINDS, 0.0)
    assert summarize([Answer(*CLEAN["english"], stopped=True)])["defect_rate"] == 0.0
