from __future__ import annotations

from seekserve.search.bm25 import Bm25Index, tokenize
from seekserve.search.extract import Document
from seekserve.search.passages import (
    Passage,
    approx_tokens,
    count_words,
    dedupe,
    fit_budget,
    rank_passages,
    select_passages,
    split_passages,
)


def make_passage(text: str, source: int = 0, position: int = 0) -> Passage:
    return Passage(source, position, f"http://web.test/{source}", f"doc {source}", text, approx_tokens(text))


def sentences(n: int, start: int = 0) -> str:
    return " ".join(f"Sentence {i} has exactly six words." for i in range(start, start + n))


def test_words_and_token_estimates() -> None:
    assert count_words("The bridge reopened, at last!") == 5
    assert count_words("大桥重开 in 2024") == 6
    assert approx_tokens("The bridge reopened, at last!") == 7  # ceil(5 x 1.3)
    assert approx_tokens("大桥重开 in 2024") == 4 + 3  # 4 CJK + ceil(2 x 1.3)
    assert approx_tokens("") == 0


def test_tokens_for_bm25() -> None:
    assert tokenize("The Kestrel Bridge's 412 rivets, a B") == ["kestrel", "bridge", "412", "rivet"]
    assert tokenize("大桥重开了 桥") == ["大桥", "桥重", "重开", "开了", "桥"]


def test_passages_are_cut_at_sentence_ends_near_the_target() -> None:
    passages = split_passages(sentences(12), passage_words=30)
    assert passages == [sentences(5), sentences(5, 5), sentences(2, 10)]
    assert [count_words(p) for p in passages] == [30, 30, 12]


def test_a_tiny_tail_joins_the_passage_before() -> None:
    assert split_passages(sentences(6), passage_words=30) == [sentences(5) + "\n" + sentences(1, 5)]


def test_paragraphs_stay_on_their_lines_and_long_sentences_are_windowed() -> None:
    text = sentences(2) + "\n" + sentences(2, 2) + "\n" + " ".join(f"w{i}" for i in range(70))
    words = [f"w{i}" for i in range(70)]
    assert split_passages(text, passage_words=30) == [
        sentences(2) + "\n" + sentences(2, 2),
        " ".join(words[:30]),
        " ".join(words[30:60]),
        " ".join(words[60:]),
    ]


def test_cjk_text_is_cut_without_spaces() -> None:
    text = "大桥在周二重新开放。工程师更换了四百一十二颗铆钉！这座桥建于一八八七年。"
    assert split_passages(text, passage_words=20) == [
        "大桥在周二重新开放。工程师更换了四百一十二颗铆钉！",
        "这座桥建于一八八七年。",
    ]


def test_near_identical_passages_are_dropped_keeping_the_first() -> None:
    a = make_passage("The Kestrel Bridge reopened on Tuesday after two years of repairs by the council.", 0)
    b = make_passage(
        "The Kestrel Bridge reopened on Tuesday after two years of repairs by the city council.", 1
    )
    c = make_passage("The ferry to Glasson leaves every morning at a quarter past seven.", 2)
    assert dedupe([a, b, c]) == [a, c]
    assert dedupe([b, a]) == [b]
    assert dedupe([make_passage("   "), c]) == [c]


def test_ranking_puts_the_passage_with_the_answer_first() -> None:
    passages = [
        make_passage("Local shops hope the reopening brings back visitors to the town.", 0, 0),
        make_passage("The ferry to Glasson leaves every morning at a quarter past seven.", 1, 0),
        make_passage("Engineers replaced all 412 rivets of the Kestrel Bridge main span.", 2, 0),
        make_passage("The Kestrel Bridge was designed in 1887 by Margaret Holloway.", 2, 1),
    ]
    ranked = rank_passages("How many rivets did engineers replace on the Kestrel Bridge?", passages)
    assert [p.text for p in ranked][:2] == [passages[2].text, passages[3].text]
    assert len(ranked) == 2 and ranked[0].score > ranked[1].score > 0  # no shared token: dropped
    unmatched = rank_passages("zebra", passages)
    assert [p.text for p in unmatched] == [p.text for p in passages]  # none matches: search order kept


def test_fit_budget_takes_passages_in_order_while_they_fit() -> None:
    passages = [make_passage(" ".join(["w"] * n)) for n in (10, 40, 5)]  # 13, 52, 7 tokens
    assert [p.num_tokens for p in passages] == [13, 52, 7]
    assert fit_budget(passages, 20) == [passages[0], passages[2]]
    assert fit_budget(passages, 100) == passages
    assert fit_budget(passages, 5) == []


def test_select_passages_end_to_end() -> None:
    docs = [
        Document("http://a.test/", "Shops", "Local shops hope the reopening brings back visitors. " * 3),
        Document(
            "http://b.test/", "Bridge", sentences(30) + "\nEngineers replaced all 412 rivets of the span."
        ),
        Document("http://c.test/", "Copy", "Local shops hope the reopening brings back visitors. " * 3),
    ]
    chosen = select_passages("how many rivets were replaced", docs, passage_words=30, max_tokens=200)
    assert [(p.source, p.url) for p in chosen] == [(1, "http://b.test/")]
    assert chosen[0].text.endswith("Engineers replaced all 412 rivets of the span.")
    assert chosen[0].position == 5 and chosen[0].num_tokens == approx_tokens(chosen[0].text)


def test_bm25_index_top_and_empty() -> None:
    index = Bm25Index.build([["kestrel", "bridge"], ["ferry"], ["bridge"]])
    assert [i for i, _ in index.top(["bridge"], 5)] == [2, 0]
    assert index.top(["zebra"], 5) == []
    assert Bm25Index.build([]).top(["bridge"], 3) == []
