"""Editions per second: render + MIME for 10,000 subscribers x 10 papers, against the naive way;
then the cost of DKIM-signing each email (RSA-2048 and Ed25519) against dkimpy's own `sign`.

The naive way, per email: Jinja over the MJML source, `mjml2html`, then an `EmailMessage`
built and serialised. It runs on a sample and is extrapolated. Run: python benchmarks/bench_render.py
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from datetime import date
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

import jinja2
import mjml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dkim  # noqa: E402

from newsletter.config import DkimSection  # noqa: E402
from newsletter.dkim_signing import Signer, generate_key, parse_key  # noqa: E402
from newsletter.message import build_message, make_message_id  # noqa: E402
from newsletter.models import Paper, Pick, Subscriber  # noqa: E402
from newsletter.render import BUILTIN_TEMPLATES, Renderer, RenderSettings  # noqa: E402
from newsletter.unsubscribe import unsubscribe_url  # noqa: E402

SUBSCRIBERS = 10_000
PAPERS_EACH = 10
NAIVE_SAMPLE = 200
SIGN_SAMPLE = 500
SIGN_ROUNDS = 5
DAY = date(2026, 11, 25)
KEY = b"benchmark-key"
SENDER = "Papers Daily <news@example.org>"
BASE_URL = "https://news.example.org"
WORDS = "model training data language attention diffusion agent reasoning benchmark vision robust efficient".split()


def make_papers(count: int) -> list[Paper]:
    return [
        Paper.create(
            f"Paper {i}: {' '.join(WORDS[(i + k) % len(WORDS)] for k in range(9))}",
            arxiv_id=f"2411.{10000 + i}",
            abstract=" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(180)),
            authors=[f"Author {i}-{k}" for k in range(5)],
            organization="Example University",
            published=DAY,
            upvotes=i % 50,
        )
        for i in range(count)
    ]


def make_subscribers(count: int) -> list[Subscriber]:
    return [
        Subscriber(email=f"reader{i}@example.org", name=f"Reader {i}", mode="keywords", keywords=[WORDS[i % 12], WORDS[(i + 5) % 12]])
        if i % 2
        else Subscriber(email=f"reader{i}@example.org", name="")
        for i in range(count)
    ]


def fast(renderer: Renderer, subscriber: Subscriber, picks: list[Pick]) -> bytes:
    link = unsubscribe_url(BASE_URL, subscriber.email, KEY)
    edition = renderer.render(subscriber, DAY, picks, unsubscribe_url=link)
    return build_message(
        sender=SENDER,
        to_name=subscriber.name,
        to_email=subscriber.email,
        subject=edition.subject,
        html=edition.html,
        text=edition.text,
        message_id=make_message_id(subscriber.email, DAY, "example.org"),
        unsubscribe_url=link,
    )


def naive_template() -> jinja2.Template:
    """The MJML layout with its includes pasted in, as one Jinja template (compiled once, to be fair)."""
    source = (BUILTIN_TEMPLATES / "digest.mjml").read_text()
    source = re.sub(r'<mj-include path="([^"]+)"\s*/>', lambda m: (BUILTIN_TEMPLATES / m[1]).read_text(), source)
    return jinja2.Environment(autoescape=True).from_string(source)


def naive(renderer: Renderer, template: jinja2.Template, subscriber: Subscriber, picks: list[Pick]) -> bytes:
    link = unsubscribe_url(BASE_URL, subscriber.email, KEY)
    context = renderer.context(subscriber, DAY, picks, link)
    html = mjml.mjml2html(template.render(context), disable_comments=True, fonts={})
    text = renderer.text_env.get_template("digest.txt").render(context)
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = Address(subscriber.name, addr_spec=subscriber.email)
    message["Subject"] = context["subject"]
    message["Date"] = "Wed, 25 Nov 2026 07:30:00 +0000"
    message["Message-ID"] = make_message_id(subscriber.email, DAY, "example.org")
    message["List-Unsubscribe"] = f"<{link}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message.as_bytes(policy=policy.SMTP)


def main():
    papers = make_papers(200)
    subscribers = make_subscribers(SUBSCRIBERS)
    picks = [
        [Pick(papers[(i * 3 + k * 17) % len(papers)], 1.0, [f"matches “{WORDS[k]}”"]) for k in range(PAPERS_EACH)]
        for i in range(SUBSCRIBERS)
    ]
    renderer = Renderer(RenderSettings(newsletter_name="Papers Daily", base_url=BASE_URL, address="1 Main St"))
    fast(renderer, subscribers[0], picks[0])  # compile the template once, outside the clock

    started = time.perf_counter()
    size = sum(len(fast(renderer, s, p)) for s, p in zip(subscribers, picks))
    fast_seconds = time.perf_counter() - started

    template = naive_template()
    started = time.perf_counter()
    for s, p in zip(subscribers[:NAIVE_SAMPLE], picks[:NAIVE_SAMPLE]):
        naive(renderer, template, s, p)
    naive_each = (time.perf_counter() - started) / NAIVE_SAMPLE

    fast_rate, naive_rate = SUBSCRIBERS / fast_seconds, 1 / naive_each
    print(f"{SUBSCRIBERS} editions x {PAPERS_EACH} papers, average message {size / SUBSCRIBERS / 1024:.1f} KiB")
    print(f"fast  (compiled MJML + Jinja + MIME skeleton): {fast_rate:8.0f} editions/s  ({fast_seconds:.2f} s)")
    print(f"naive (Jinja over MJML + mjml2html + EmailMessage, {NAIVE_SAMPLE} sampled): {naive_rate:8.0f} editions/s"
          f"  (~{SUBSCRIBERS * naive_each:.1f} s extrapolated)")
    print(f"ratio: {fast_rate / naive_rate:.1f}x")
    sign_costs([fast(renderer, s, p) for s, p in zip(subscribers[:SIGN_SAMPLE], picks[:SIGN_SAMPLE])],
               fast_seconds / SUBSCRIBERS)


def sign_costs(messages: list[bytes], build_each: float) -> None:
    """Milliseconds per email to DKIM-sign, ours and dkimpy.sign, over SIGN_ROUNDS rounds (min-max)."""
    section = DkimSection(domain="example.org", selector="bench", private_key_file="unused.pem")
    for kind in ("rsa", "ed25519"):
        key = parse_key(generate_key(kind), kind)
        signer = Signer(section, key)
        ours, theirs = [], []
        for _ in range(SIGN_ROUNDS):
            started = time.perf_counter()
            for data in messages:
                signer.sign(data)
            ours.append((time.perf_counter() - started) / len(messages) * 1000)
            started = time.perf_counter()
            for data in messages[:100]:
                dkim.sign(data, b"bench", b"example.org", key.private, canonicalize=(b"relaxed", b"relaxed"),
                          signature_algorithm=key.algorithm, include_headers=[b"from", b"to", b"subject"])
            theirs.append((time.perf_counter() - started) / 100 * 1000)
        median = statistics.median(ours)
        print(f"DKIM {kind:8}: {min(ours):.2f}-{max(ours):.2f} ms/email (median {median:.2f}; building the email "
              f"takes {build_each * 1000:.2f} ms)  dkimpy.sign: {min(theirs):.1f}-{max(theirs):.1f} ms/email  "
              f"ratio: {statistics.median(theirs) / median:.1f}x")


if __name__ == "__main__":
    main()
