"""Opens a `myelin-sim --html` page in headless Chromium and reports what it shows.

Run by sim/tests/timeline_browser.rs with <workspace>/.venv/bin/python (selenium, from
tests/requirements.txt) and Debian's chromium and chromium-driver (tests/setup installs
them). Usage:

    timeline_page.py PAGE.html SCREENSHOT.png

Prints one line of JSON: the console errors, how long the page took to load and draw,
the lane labels, the number of fault and down spans, of violation markers and of
highlighted events, and what the detail panel shows after clicking the first violation
marker (or the first fault span), and what the node and partition filters leave; then
zooms, filters and jumps to the violation, so that an error in any of it is reported.
Exits 2 if the browser cannot be driven; every check
on the result is the Rust test's.
"""

import json
import pathlib
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"


def main():
    page = pathlib.Path(sys.argv[1]).resolve()
    screenshot = pathlib.Path(sys.argv[2])
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1600,1200"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        began = time.monotonic()
        driver.get(page.as_uri())
        load_wall_ms = (time.monotonic() - began) * 1000
        ready_ms = driver.execute_script("return window.timelineReadyMs === undefined ? null : window.timelineReadyMs")
        navigation = driver.execute_script(
            "const n = performance.getEntriesByType('navigation')[0];"
            "return n ? {dom_content_loaded_ms: n.domContentLoadedEventEnd, load_ms: n.loadEventEnd} : null")
        lanes = [e.get_attribute("data-lane") for e in driver.find_elements(By.CSS_SELECTOR, "text.lane-label[data-lane]")]
        partitions = [e.get_attribute("data-partition") for e in driver.find_elements(By.CSS_SELECTOR, "text.partition-label")]
        faults = driver.find_elements(By.CSS_SELECTOR, "rect.fault")
        downs = driver.find_elements(By.CSS_SELECTOR, "rect.down")
        violations = driver.find_elements(By.CSS_SELECTOR, "g.violation")
        lead_up = driver.find_elements(By.CSS_SELECTOR, ".lead-up")
        messages = driver.find_elements(By.CSS_SELECTOR, "line.msg")
        lost = driver.find_elements(By.CSS_SELECTOR, "line.msg.lost")
        leaders = driver.find_elements(By.CSS_SELECTOR, "rect.leader")
        clicked = None
        target = violations[0] if violations else (faults[0] if faults else (downs[0] if downs else None))
        if target is not None:
            driver.execute_script(
                "arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", target)
            records = driver.find_elements(By.ID, "detail-record")
            clicked = records[0].text if records else ""
        driver.save_screenshot(str(screenshot))
        # Zoom, filter and jump, as a reader would: none of it may log an error.
        driver.find_element(By.ID, "zoom-in").click()
        driver.find_element(By.ID, "zoom-out").click()
        Select(driver.find_element(By.ID, "filter-node")).select_by_visible_text("node 1")
        node_filter_lanes = [e.get_attribute("data-lane") for e in driver.find_elements(By.CSS_SELECTOR, "text.lane-label[data-lane]")]
        Select(driver.find_element(By.ID, "filter-node")).select_by_visible_text("all")
        if partitions:
            Select(driver.find_element(By.ID, "filter-partition")).select_by_visible_text(partitions[-1])
        partition_filter_charts = len(driver.find_elements(By.CSS_SELECTOR, "text.partition-label"))
        Select(driver.find_element(By.ID, "filter-partition")).select_by_visible_text("all")
        if violations:
            driver.find_element(By.ID, "to-violation").click()
        driver.find_element(By.ID, "fit").click()
        errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        print(json.dumps({
            "console_errors": errors,
            "load_wall_ms": round(load_wall_ms),
            "ready_ms": ready_ms,
            "navigation": navigation,
            "verdict": driver.find_element(By.ID, "verdict").text,
            "notes": [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".note")],
            "lanes": lanes,
            "partitions": partitions,
            "faults": len(faults),
            "downs": len(downs),
            "violations": len(violations),
            "lead_up": len(lead_up),
            "messages": len(messages),
            "lost": len(lost),
            "leaders": len(leaders),
            "clicked_record": clicked,
            "node_filter_lanes": node_filter_lanes,
            "partition_filter_charts": partition_filter_charts,
        }))
    finally:
        driver.quit()


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # the test prints this, with the setup hint
        print(f"cannot drive the browser: {error!r}", file=sys.stderr)
        sys.exit(2)
