"""Web-search grounding: search results and page text for the model to answer from, with sources.

    query ─► providers/ (local BM25 folder, SearXNG, Bing, Brave, Tavily) ─► SearchResult list
          ─► fetch.py   pages of the results without text: SSRF-safe (addresses.py), budgeted
          ─► extract.py main text of each page (trafilatura)
          ─► passages.py cut, de-duplicated, ranked against the query (bm25.py), trimmed to a budget
grounding.py runs those for one request under its total budget (Grounder -> Grounding: numbered
sources, timings, error); prompt.py puts the sources around the question (DeepSeek's official search
template, or a numbered one); citations.py turns the answer's marks into url_citation annotations.
service.py holds what a serving process keeps (WebSearch) and decides which requests search
(plan_search); cache.py keeps results and read pages between requests; metrics.py counts it all.
config.py holds the settings (SearchConfig), errors.py the failures; none of them reaches a client:
an answer goes on without search when it fails. Nothing in a page or a result changes a request's
parameters: they are text for the model's context only.
"""
