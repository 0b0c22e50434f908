"""Presidio anchor for bench/guard.sh: presidio-analyzer with its regex recognizers and a blank spaCy pipeline
(no NER model), on the same PII set and the same 500-character prompts as Keel.

Usage: guard_anchor.py SET.jsonl PROMPTS.txt PREDICTIONS_OUT.jsonl TIMINGS_OUT.json
Writes one {"spans": [...]} line per sentence with Presidio's types mapped to Keel's names (types Keel's set
does not label are dropped, which can only help Presidio's precision), and p50/p99 latencies.
"""
import json
import logging
import sys
import time

import spacy
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_analyzer.nlp_engine import SpacyNlpEngine

TYPES = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "credit_card",
    "IBAN_CODE": "iban",
    "US_SSN": "ssn",
    "IP_ADDRESS": "ip_address",
    "DATE_TIME": "date_of_birth",
    "PERSON": "person",
    "LOCATION": "address",
}


class BlankSpacy(SpacyNlpEngine):
    """spaCy with a blank English pipeline: tokens only, no NER model to download."""

    def __init__(self):
        super().__init__(models=[{"lang_code": "en", "model_name": "blank"}])
        self.nlp = {"en": spacy.blank("en")}

    def load(self):
        pass


def main():
    # Presidio's URL recogniser asks tldextract for the public-suffix list online, then uses its bundled snapshot.
    logging.getLogger("tldextract").setLevel(logging.CRITICAL)
    set_path, prompts_path, out_path, timings_path = sys.argv[1:5]
    engine = BlankSpacy()
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(nlp_engine=engine)
    analyzer = AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["en"])
    samples = [json.loads(l) for l in open(set_path, encoding="utf-8") if l.strip()]
    started = time.perf_counter()
    with open(out_path, "w", encoding="utf-8") as out:
        for s in samples:
            spans = [
                {"type": TYPES[r.entity_type], "start": r.start, "end": r.end}
                for r in analyzer.analyze(text=s["text"], language="en")
                if r.entity_type in TYPES
            ]
            out.write(json.dumps({"spans": spans}) + "\n")
    set_seconds = time.perf_counter() - started
    timings = {"set_seconds": set_seconds, "prompts": {}}
    names = ["benign", "pii", "attack"]
    for name, p in zip(names, open(prompts_path, encoding="utf-8").read().splitlines()):
        assert len(p) == 500
        for _ in range(20):
            analyzer.analyze(text=p, language="en")
        us = []
        for _ in range(500):
            t = time.perf_counter()
            analyzer.analyze(text=p, language="en")
            us.append((time.perf_counter() - t) * 1e6)
        us.sort()
        timings["prompts"][name] = {"p50_us": us[len(us) // 2], "p99_us": us[len(us) * 99 // 100]}
    json.dump(timings, open(timings_path, "w"))


if __name__ == "__main__":
    main()
