"""The web room in a real browser: Debian's chromium, headless, driven by Playwright (nothing is
downloaded: the system browser is launched by path). Skipped only when no browser is installed and
BOTFLEET_REQUIRE_BROWSER is unset; CI sets it, so there a missing browser fails instead.

The feed and operator tests save the screenshots the README shows: to docs/screenshots/ with
BOTFLEET_SCREENSHOTS=docs/screenshots, else to a scratch folder."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.images_util import jpeg
from tests.web_world import ADMIN_TOKEN, WebRoom, web_room, who_writes

# Where the screenshots go: the README's folder when asked (BOTFLEET_SCREENSHOTS=docs/screenshots), else a
# scratch folder, so a test run does not leave the committed pictures changed.
SCREENSHOTS = Path(os.environ.get("BOTFLEET_SCREENSHOTS") or tempfile.mkdtemp(prefix="botfleet-screens-")).resolve()
SCREENSHOTS.mkdir(parents=True, exist_ok=True)


def browser_path() -> str | None:
    for candidate in (os.environ.get("BOTFLEET_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


CHROMIUM = browser_path()
try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # pragma: no cover - the dev extra installs it
    async_playwright = None  # type: ignore[assignment]

if (CHROMIUM is None or async_playwright is None) and not os.environ.get("BOTFLEET_REQUIRE_BROWSER"):
    pytest.skip("no chromium (apt-get install chromium) or playwright", allow_module_level=True)

VOICES = {
    "skeptic": "Congratulations! Who covers the vet bills, though? Cats live fifteen years or more: budget for it now.",
    "supporter": "That is wonderful news! A cat picks its people carefully. What is their name?",
    "realist": "Lovely. Expect a week or two of hiding under the bed before they settle; that is normal.",
    "nerd": "Fun fact: cats purr at 25 to 150 Hz, a range some studies link to faster bone healing.",
}


def voices(body: dict[str, Any]) -> str:
    return VOICES.get(who_writes(body), "Nice.")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM is not None and async_playwright is not None, "BOTFLEET_REQUIRE_BROWSER is set: install chromium"
    async with async_playwright() as p:
        # --no-sandbox: CI runs as root in a container, where chromium's sandbox cannot start.
        b = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        await b.close()


async def open_feed(browser: Browser, room: WebRoom, name: str = "Alice", width: int = 900) -> Page:
    page = await browser.new_page(viewport={"width": width, "height": 1000})
    await page.goto(room.base + "/")
    await page.fill("#name-form input", name)
    await page.click("#name-form button")
    await expect(page.locator("#composer")).to_be_visible()
    return page


async def post(page: Page, text: str) -> None:
    await page.fill("#composer textarea", text)
    await page.click("#post-button")


async def test_a_post_gets_three_comments_live_with_ai_badges(browser: Browser, tmp_path: Path) -> None:
    async with web_room(tmp_path, reply=voices, chunk_seconds=0.05, feed={"reactions": True}) as room:
        page = await open_feed(browser, room)
        await page.evaluate("window.notReloaded = true")
        await post(page, "I adopted a cat!")
        comments = page.locator(".post .comments .msg.ai")
        await expect(comments).to_have_count(3, timeout=15000)
        await expect(page.locator(".post .comments .text.streaming")).to_have_count(0, timeout=15000)
        names = await comments.locator(".name").all_text_contents()
        assert len(set(names)) == 3
        assert await comments.locator(".badge").all_text_contents() == ["AI"] * 3
        texts = await comments.locator(".text").all_text_contents()
        assert sorted(texts) == sorted(VOICES[n.removeprefix("The ").lower()] for n in names)
        assert await page.evaluate("window.notReloaded") is True
        # The follower who did not comment liked the post (seeded): counted once.
        await expect(page.locator(".post > .msg .chip")).to_have_text("👍1")
        await page.screenshot(path=str(SCREENSHOTS / "feed.png"), full_page=True)
        phone = await open_feed(browser, room, "Bob", width=390)
        await expect(phone.locator(".post .comments .msg.ai")).to_have_count(3)
        await phone.screenshot(path=str(SCREENSHOTS / "feed-phone.png"))


async def test_a_reply_to_a_comment_is_answered_by_that_persona(browser: Browser, tmp_path: Path) -> None:
    async with web_room(tmp_path, reply=voices) as room:
        page = await open_feed(browser, room)
        await post(page, "I adopted a cat!")
        comments = page.locator(".post .comments .msg.ai")
        await expect(comments).to_have_count(3, timeout=15000)
        first = comments.nth(0)
        persona = await first.locator(".name").text_content()
        await first.locator("button.reply").click()
        await page.fill(".reply-form textarea", "Her name is Miso. Any tips?")
        await page.click(".reply-form button.primary")
        await expect(comments).to_have_count(4, timeout=15000)
        answer = comments.nth(3)
        await expect(answer.locator(".name")).to_have_text(persona or "")
        # The answer quotes the person's reply, which is in the thread too.
        await expect(answer.locator(".quote")).to_contain_text("Her name is Miso")


async def test_html_in_a_model_reply_is_shown_as_text_and_runs_nothing(browser: Browser, tmp_path: Path) -> None:
    hostile = '<img src=x onerror=alert(1)><script>alert(2)</script><b id="bold">bold</b>'
    async with web_room(tmp_path, reply=lambda body: hostile) as room:
        page = await open_feed(browser, room)
        dialogs: list[str] = []
        page.on("dialog", lambda d: dialogs.append(d.message))
        await post(page, "<i>I adopted a cat!</i>")
        comments = page.locator(".post .comments .msg.ai .text")
        await expect(comments).to_have_count(3, timeout=15000)
        await expect(comments.nth(0)).to_have_text(hostile)
        await expect(page.locator(".post > .msg .text")).to_have_text("<i>I adopted a cat!</i>")
        assert await page.locator("#posts img, #posts script, #posts b, #posts i").count() == 0
        await page.wait_for_timeout(300)
        assert dialogs == []


async def test_the_operator_page_shows_decisions_and_refuses_a_wrong_token(browser: Browser, tmp_path: Path) -> None:
    async with web_room(tmp_path, reply=voices, sample_seconds=0.3) as room:
        ctx = await browser.new_context(viewport={"width": 1100, "height": 1300})
        op = await ctx.new_page()
        await op.goto(room.base + "/operator")
        await op.fill("#login input", "not-the-token")
        await op.click("#login button")
        await expect(op.locator("#login .error")).to_have_text("wrong token")
        assert await op.locator("#app").is_hidden()
        await op.fill("#login input", ADMIN_TOKEN)
        await op.click("#login button")
        await expect(op.locator("#personas tbody tr")).to_have_count(4)

        feed = await ctx.new_page()
        await feed.goto(room.base + "/")
        await feed.fill("#name-form input", "Alice")
        await feed.click("#name-form button")
        await post(feed, "I adopted a cat!")
        await expect(feed.locator(".post .comments .msg.ai")).to_have_count(3, timeout=15000)
        pid = room.web.hub.posts("feed")[0]["id"]
        decision = op.locator(".decision", has=op.locator("code.event", has_text=f"web:{pid}"))
        await expect(decision.locator(".verdict.reply")).to_have_count(3)
        await expect(decision.locator(".verdict.skip")).to_contain_text("feed:not_chosen")
        await room.settled()
        await op.wait_for_timeout(1200)
        await op.reload()
        await expect(op.locator(".chart[data-metric='replies'] .value")).to_have_text("3")
        await op.screenshot(path=str(SCREENSHOTS / "operator.png"), full_page=True)
        # The cookie keeps the operator signed in: no token asked again, until they sign out.
        assert await op.locator("#login").is_hidden()
        await op.click("#signout")
        await expect(op.locator("#login")).to_be_visible()
        await ctx.close()


async def test_a_broken_persona_file_shows_file_and_line_after_reload(browser: Browser, tmp_path: Path) -> None:
    async with web_room(tmp_path) as room:
        op = await browser.new_page()
        await op.goto(room.base + "/operator")
        await op.fill("#login input", ADMIN_TOKEN)
        await op.click("#login button")
        await expect(op.locator("#personas tbody tr")).to_have_count(4)
        broken = room.home / "personas" / "nerd.yaml"
        broken.write_text("id: nerd\nname: The Nerd\nprompt: You are nerd.\nlimits:\n  per_minute: lots\n")
        await op.click("#reload")
        problem = op.locator("#problems .problem")
        await expect(problem).to_have_count(1)
        await expect(problem).to_contain_text(f"{broken}:5: limits.per_minute:")
        assert len(room.app.fleet.personas) == 4


async def test_rooms_complete_mentions_and_answer_them_live(browser: Browser, tmp_path: Path) -> None:
    async with web_room(tmp_path, reply=voices, chunk_seconds=0.03) as room:
        page = await browser.new_page(viewport={"width": 1100, "height": 800})
        await page.goto(room.base + "/rooms")
        await page.fill("#name-form input", "Alice")
        await page.click("#name-form button")
        await expect(page.locator("#channel-title")).to_have_text("# general")
        box = page.locator("#say input[name=text]")
        await box.press_sequentially("what do you think @ske")
        await expect(page.locator("#complete li")).to_have_count(1)
        await box.press("Tab")
        await expect(box).to_have_value("what do you think @skeptic ")
        await box.press_sequentially("about cats?")
        await box.press("Enter")
        answer = page.locator("#messages .msg.ai")
        await expect(answer).to_have_count(1, timeout=15000)
        await expect(answer.locator(".name")).to_have_text("The Skeptic")
        await expect(answer.locator(".text")).to_have_text(VOICES["skeptic"])
        await box.fill("/ask nerd why do cats purr?")
        await box.press("Enter")
        await expect(answer).to_have_count(2, timeout=15000)
        await expect(answer.nth(1).locator(".name")).to_have_text("The Nerd")
        await page.screenshot(path=str(SCREENSHOTS / "rooms.png"))


async def test_followers_are_chosen_with_checkboxes(browser: Browser, tmp_path: Path) -> None:
    async with web_room(tmp_path, reply=voices) as room:
        page = await open_feed(browser, room)
        await page.click(".followers summary")
        boxes = page.locator("#follower-list input")
        await expect(boxes).to_have_count(4)
        for i in range(4):
            await expect(boxes.nth(i)).to_be_checked()
        await page.locator("#follower-list input[value='supporter']").uncheck()
        await page.click("#followers-save")
        await expect(page.locator("#notices .notice")).to_contain_text("Your posts will get comments from")
        await post(page, "I adopted a cat!")
        comments = page.locator(".post .comments .msg.ai")
        await expect(comments).to_have_count(3, timeout=15000)
        assert "The Supporter" not in await comments.locator(".name").all_text_contents()
        await page.reload()
        await page.click(".followers summary")
        await expect(page.locator("#follower-list input[value='supporter']")).not_to_be_checked()
        await expect(page.locator("#follower-list input[value='nerd']")).to_be_checked()


async def test_a_photo_posted_with_the_picker_is_shown_and_seen_by_the_commenters(
    browser: Browser, tmp_path: Path
) -> None:
    vision = {"model": "gpt-4o-mini", "image_max_side": 256, "image_max_bytes": 300_000}
    async with web_room(tmp_path, reply=voices, llm=vision) as room:
        page = await open_feed(browser, room)
        cat, huge = tmp_path / "cat.jpg", tmp_path / "huge.jpg"
        cat.write_bytes(gradient(1200, 900))
        huge.write_bytes(jpeg(1500, 1500, noisy=True))  # well over 300 kB
        # Too big: the picker says so and keeps nothing; nothing is sent.
        await page.set_input_files("#photo-input", str(huge))
        await expect(page.locator("#notices .notice")).to_contain_text("huge.jpg is over the 0.3 MB limit")
        await expect(page.locator("#photo-list")).to_be_hidden()
        await page.set_input_files("#photo-input", str(cat))
        await expect(page.locator("#photo-list .chip")).to_have_text("cat.jpg")
        await post(page, "Meet Miso!")
        comments = page.locator(".post .comments .msg.ai")
        await expect(comments).to_have_count(3, timeout=15000)
        photo = page.locator(".post > .msg img.photo")
        await expect(photo).to_have_count(1)
        assert (await photo.get_attribute("src") or "").startswith("/photo/")
        # Loaded from the room (the policy allows img-src 'self' only), at the shown size.
        await expect(photo).to_have_js_property("naturalWidth", 1200)
        await expect(page.locator("#photo-list")).to_be_hidden()
        assert len(room.fake.images) == 3 and len(room.fake.requests) == 3
        await page.locator("#notices .notice .close").click()
        await page.screenshot(path=str(SCREENSHOTS / "feed-photo.png"), full_page=True)


def gradient(width: int, height: int) -> bytes:
    """A JPEG with some colour in it, for the screenshot."""
    across = Image.linear_gradient("L").rotate(90).resize((width, height))
    down = Image.linear_gradient("L").resize((width, height))
    out = io.BytesIO()
    Image.merge("RGB", (across, Image.new("L", (width, height), 150), down)).save(out, "JPEG")
    return out.getvalue()
