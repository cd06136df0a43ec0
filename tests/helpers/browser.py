"""A real browser for the topology page's tests and benchmark: Debian's
chromium driven by its chromium-driver through Selenium (no browser
download; .ci/run installs both when missing). Headless, on loopback."""

import contextlib
import os
import shutil
import time

CHROMIUM_PATHS = ('/usr/bin/chromium', '/usr/bin/chromium-browser')
DRIVER_PATHS = ('/usr/bin/chromedriver',)
WINDOW = (1600, 1000)


def _first(paths, name):
    for path in paths:
        if os.path.exists(path):
            return path
    return shutil.which(name)


def chromium_paths():
    """(browser, driver) paths, or None when either is missing."""
    browser = _first(CHROMIUM_PATHS, 'chromium')
    driver = _first(DRIVER_PATHS, 'chromedriver')
    return (browser, driver) if browser and driver else None


def start_chromium(download_dir, window=WINDOW):
    """A headless Chromium session downloading into ``download_dir``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise RuntimeError('chromium and chromium-driver are needed '
                           '(apt-get install -y chromium chromium-driver)')
    browser, driver = paths
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ('--headless=new', '--no-sandbox', '--disable-gpu',
                     '--disable-dev-shm-usage', '--no-proxy-server',
                     '--disable-extensions', '--disable-background-networking',
                     '--disable-component-update', '--no-first-run',
                     f'--window-size={window[0]},{window[1]}'):
        options.add_argument(argument)
    options.add_experimental_option('prefs', {
        'download.default_directory': str(download_dir),
        'download.prompt_for_download': False,
    })
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    session = webdriver.Chrome(options=options,
                               service=Service(executable_path=driver))
    session.execute_cdp_cmd('Page.setDownloadBehavior', {
        'behavior': 'allow', 'downloadPath': str(download_dir)})
    return session


@contextlib.contextmanager
def chromium(download_dir):
    session = start_chromium(download_dir)
    try:
        yield session
    finally:
        session.quit()


def wait_for(predicate, timeout=20, interval=0.05, what='a condition'):
    """The first truthy value of ``predicate()`` within ``timeout``
    seconds, else AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out waiting for {what}')
        time.sleep(interval)


def wait_for_file(directory, suffix, timeout=20):
    """The path of the first finished download ending in ``suffix``."""
    def done():
        for name in os.listdir(directory):
            if name.endswith(suffix):
                return os.path.join(directory, name)
        return None
    return wait_for(done, timeout, what=f'a {suffix} download')


class Page:
    """The topology page in a browser session: sign-in, the tree, the
    graph (through ``window.calipso``), screenshots into ``shots``."""

    def __init__(self, session, base_url, shots):
        self.session = session
        self.base_url = base_url.rstrip('/')
        self.shots = shots
        os.makedirs(shots, exist_ok=True)
        self.count = 0

    def by_id(self, element_id):
        from selenium.webdriver.common.by import By
        return self.session.find_element(By.ID, element_id)

    def css(self, selector):
        from selenium.webdriver.common.by import By
        return self.session.find_elements(By.CSS_SELECTOR, selector)

    def text(self, selector):
        """The shown text of the first element ``selector`` matches (None:
        none), read in one script call: a part the page redraws (a live
        refresh) cannot go stale between finding and reading it."""
        return self.session.execute_script(
            'const found = document.querySelector(arguments[0]);'
            'return found ? found.innerText : null;', selector)

    def open(self):
        self.session.get(self.base_url + '/ui/')
        wait_for(lambda: self.by_id('signin').is_displayed()
                 or self.by_id('main').is_displayed(), what='the page')

    def sign_in(self, token):
        self.by_id('token-input').send_keys(token)
        self.by_id('signin-button').click()
        wait_for(lambda: self.by_id('main').is_displayed(),
                 what='the signed-in page')
        self.wait_idle()

    def wait_idle(self):
        wait_for(lambda: self.by_id('status').text != 'loading…',
                 what='the page to load')

    def tree_rows(self):
        return [{'id': row.get_attribute('data-id'),
                 'type': row.get_attribute('data-type'),
                 'text': row.text}
                for row in self.css('#tree .node-row')]

    def tree_row(self, object_id):
        from selenium.common.exceptions import StaleElementReferenceException

        def find():
            try:
                return next(
                    (row for row in self.css('#tree .node-row, '
                                             '#search-results .node-row')
                     if row.get_attribute('data-id') == object_id), None)
            except StaleElementReferenceException:
                return None
        return wait_for(find, what=f'tree row {object_id}')

    def click_row(self, object_id):
        """Clicks a row's name; a row re-rendered between finding and
        clicking it (the tree refreshing, a search answering) is found
        again."""
        from selenium.common.exceptions import StaleElementReferenceException

        def click():
            try:
                self.tree_row(object_id).find_element(
                    'css selector', '.name').click()
            except StaleElementReferenceException:
                return False
            return True
        wait_for(click, what=f'a click on row {object_id}')

    def expand(self, object_id):
        """Opens a tree row and waits for its children to be shown."""
        row = self.tree_row(object_id)
        row.find_element('css selector', '.twisty').click()
        wait_for(lambda: row.find_elements(
            'xpath', './following-sibling::ul[@data-loaded]'),
            what=f'children of {object_id}')

    def select(self, object_id):
        marks = self.graph_marks()
        self.click_row(object_id)
        wait_for(lambda: self.graph_marks() > marks
                 and self.graph()['focus'] == object_id,
                 what=f'the graph of {object_id}')
        self.wait_idle()

    def graph_marks(self):
        return self.session.execute_script(
            "return performance.getEntriesByName('calipso:graph').length")

    def graph(self):
        return self.session.execute_script(
            'return window.calipso ? window.calipso.graphState() : null')

    def screenshot(self, name):
        self.count += 1
        path = os.path.join(self.shots, f'{self.count:02d}-{name}.png')
        self.session.save_screenshot(path)
        return path

    def console_errors(self):
        return [entry for entry in self.session.get_log('browser')
                if entry['level'] == 'SEVERE']

    def report_rows(self):
        """The rows of the impact or path table, as dicts by column."""
        headers = [th.text for th in self.css('#report-table thead th')]
        return [dict(zip(headers, [td.text for td in tr.find_elements(
            'css selector', 'td')], strict=True))
            for tr in self.css('#report-table tbody tr')]

    def press(self, button_id, title_text):
        """Presses Impact or Path; returns the report's rows once its
        title shows ``title_text``."""
        self.by_id(button_id).click()
        wait_for(lambda: self.by_id('report').is_displayed()
                 and title_text in self.by_id('report-title').text,
                 what=f'the {button_id} report')
        return self.report_rows()
