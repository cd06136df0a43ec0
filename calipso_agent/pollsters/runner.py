"""One polling source on its ticks: ``SourceRunner``.

A runner is a thread that wakes on the source's ticks (multiples of its
interval on the wall clock, so agents stamp a cycle alike and a re-polled
sample keeps its id), finds the resources (the source's list, its
discovery or the pollsters' default one), keeps this agent's share
(``partitioning``), runs the selected pollsters one after the other,
each a step under the step timeout (``supervised``), or one step for
the pollsters of a ``step_group``, and puts their samples in the
manager's outbox. A cycle lasting past the next tick skips the ticks it
covered (logged once per streak): cycles never stack.
"""

import datetime
import logging
import math
import threading
import time

from calipso_agent import delivery, metrics
from calipso_agent.pollsters import base, supervised

LOG = logging.getLogger(__name__)


class DiscoveryUnavailableError(Exception):
    """The discovery a pollster needs failed this cycle (logged)."""


def plugin_name(plugin):
    cls = type(plugin)
    return f'{cls.__module__}.{cls.__qualname__}'


def split_discovery(text):
    """(plugin name, param) of a source's discovery entry:
    ``endpoint://compute`` or ``endpoint:compute`` → ('endpoint',
    'compute'); ``local_host`` → ('local_host', None)."""
    for separator in ('://', ':'):
        if separator in text:
            name, param = text.split(separator, 1)
            return name, param or None
    return text, None


def next_tick(now, interval):
    """The first multiple of ``interval`` (epoch seconds) after ``now``."""
    return (math.floor(now / interval) + 1) * interval


def as_list(samples):
    """``get_samples``' answer as a list (a list as it is)."""
    return samples if type(samples) is list else list(samples)


def iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat()

class Cycle:
    """One cycle under way: its tick and steps."""

    __slots__ = ('tick', 'steps')

    def __init__(self, tick, steps):
        self.tick = tick
        self.steps = supervised.Steps(steps)


class Plan:
    """The steps of the cycles of one definition, made once: each cycle
    sets the context, cache and found resources its steps read (a step
    given up in an earlier cycle already read its own)."""

    __slots__ = ('definition', 'steps', 'readings', 'context', 'cache',
                 'found')

    def __init__(self, definition):
        self.definition = definition
        self.steps = ()
        # The ``reads`` of the plan's pollsters (base.CYCLE_READINGS).
        self.readings = frozenset()
        self.context = self.cache = self.found = None


class SourceRunner:
    """The thread polling one source on its ticks.

    The steps of a cycle run in this thread. When the watchdog gives up a
    step (``check``), a new thread takes over: it finishes the cycle and
    goes on with the ticks; the old one ends when the stuck call returns.
    """

    def __init__(self, manager, definition):
        self.manager = manager
        self.name = definition.name
        self.definition = definition
        self.steps = supervised.StepRunner(
            f'Polling source {self.name}',
            manager.conf.polling.pollster_timeout)
        self.interval = definition.interval
        # Not a mutable option: read once (an option lookup is slow).
        self.sample_source = manager.conf.sample_source
        self.due = None
        self.cycle = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._overrunning = False
        self._backlogged = False
        self._partition_failing = False
        self._planned = None
        self._counters = None
        self.thread = None

    def start(self, generation=0):
        self.thread = threading.Thread(
            target=self._loop, args=(generation,), daemon=True,
            name=f'polling-{self.name}')
        self.thread.start()

    def update(self, definition):
        """A new definition (file or override): used from the next tick,
        computed anew when the interval changed."""
        self.definition = definition
        self._wake.set()

    def check(self):
        """The watchdog's call: a new thread goes on when a step of the
        cycle under way ran past the timeout."""
        generation = self.steps.give_up_overdue()
        if generation is not None and not self._stopping.is_set():
            self.start(generation)

    def stop(self):
        self._stopping.set()
        self._wake.set()

    def join(self, timeout):
        if self.thread is not None:
            self.thread.join(timeout)

    def _loop(self, generation):
        if self.cycle is not None:
            # Taking over a cycle whose step was given up.
            if not self._finish(self.cycle, generation):
                return
            self._schedule_after(self.cycle.tick)
            self.cycle = None
        if self.due is None:
            self.due = next_tick(time.time(), self.interval)
        while not self._stopping.is_set():
            woken = self._wake.wait(max(0.0, self.due - time.time()))
            if self._stopping.is_set():
                return
            if woken:
                self._wake.clear()
                if self.definition.interval != self.interval:
                    self.interval = self.definition.interval
                    self.due = next_tick(time.time(), self.interval)
                    LOG.info('Polling source %s: every %g s from %s',
                             self.name, self.interval, iso(self.due))
                continue
            try:
                if not self.poll(self.due, generation):
                    return
            except Exception:
                LOG.exception('Polling source %s: cycle of %s failed',
                              self.name, iso(self.due))
            self.cycle = None
            self._schedule_after(self.due)

    def _schedule_after(self, tick):
        if self.definition.interval != self.interval:
            self.interval = self.definition.interval
            LOG.info('Polling source %s: every %g s', self.name,
                     self.interval)
        finished = time.time()
        following = next_tick(max(finished, tick), self.interval)
        if following - tick > self.interval * 1.5:
            metrics.polling_overrun(self.name)
            if not self._overrunning:
                self._overrunning = True
                LOG.warning('Polling source %s: the cycle of %s took %.1f s, '
                            'longer than its interval (%g s); the ticks it '
                            'covered are skipped', self.name, iso(tick),
                            finished - tick, self.interval)
        elif self._overrunning:
            self._overrunning = False
            LOG.info('Polling source %s: cycles fit their interval again',
                     self.name)
        self.due = following

    def poll(self, tick, generation=None):
        """One cycle of the source, stamped ``tick``; False when this
        thread was given up during it (another one finishes it)."""
        definition = self.manager.effective(self.name) or self.definition
        if (definition is not self.definition
                and definition != self.definition):
            # An override read now: its interval counts from this cycle.
            self.definition = definition
        if not definition.enabled:
            metrics.polling_cycle(self.name, 'disabled')
            return True
        if not self.manager.outbox.has_room():
            metrics.polling_cycle(self.name, 'backlog')
            if not self._backlogged:
                self._backlogged = True
                LOG.error('Polling source %s: %d polled samples wait for '
                          'the publishers; cycles are skipped until they '
                          'are handed over', self.name,
                          len(self.manager.outbox))
            return True
        self._backlogged = False
        timestamp, id_instant = base.cycle_stamp(tick)
        context = base.PollingContext(self.manager.conf, self.manager.host,
                                      self.name, timestamp,
                                      self.sample_source, id_instant)
        self.cycle = Cycle(tick, self._plan(definition, context))
        return self._finish(self.cycle, generation)

    def _finish(self, cycle, generation):
        """Run the cycle's steps left, publish its samples."""
        if generation is None:
            generation = self.steps.generation
        if not self.steps.run(cycle.steps, generation):
            return False
        samples = self._collect(cycle.steps.steps)
        self.manager.outbox.put(samples)
        if self._counters is None:
            self._counters = metrics.polled_cycle_counters(self.name)
        cycles, polled = self._counters
        polled.inc(len(samples))
        cycles.inc()
        return True

    def _share(self, resources, partitioned):
        if not partitioned:
            return list(resources)
        try:
            share = self.manager.partitioner.my_share(self.name, resources)
        except Exception as exc:
            if not self._partition_failing:
                self._partition_failing = True
                LOG.error('Polling source %s: coordination backend failing '
                          '(%s); this agent polls every resource until it '
                          'answers (sample ids make the overlap harmless)',
                          self.name, delivery.one_line(exc))
            return list(resources)
        if self._partition_failing:
            self._partition_failing = False
            LOG.info('Polling source %s: coordination backend answers '
                     'again', self.name)
        return share

    def _assignments(self, definition):
        """[(pollster, needs, step key)] of the pollsters the definition
        selects, and the discovery entries they need."""
        assigned = []
        wanted = []
        for pollster in self.manager.pollsters:
            if not definition.selects(pollster.meter):
                continue
            if definition.resources:
                needs = ['static']
            elif definition.discovery:
                if pollster.default_discovery is None:
                    needs = list(definition.discovery)
                else:
                    needs = [d for d in definition.discovery
                             if split_discovery(d)[0]
                             == pollster.default_discovery]
            elif pollster.default_discovery:
                needs = [pollster.default_discovery]
            else:
                needs = []
            if not needs:
                continue
            wanted.extend(n for n in needs
                          if n != 'static' and n not in wanted)
            assigned.append((pollster, needs,
                             f'pollster {pollster.meter} '
                             f'({plugin_name(pollster)})'))
        return assigned, wanted

    def _plan(self, definition, context):
        """The steps of a cycle (discoveries, then pollsters), set for a
        new cycle in ``context``."""
        plan = self._planned
        if plan is None or not (plan.definition is definition
                                or plan.definition == definition):
            plan = self._planned = self._make_plan(definition)
        plan.context = context
        plan.cache = {base.CYCLE_READINGS: plan.readings}
        plan.found = {}
        for step in plan.steps:
            step.result = step.error = step.failed = None
        return plan.steps

    def _make_plan(self, definition):
        """The Plan of ``definition``'s cycles (made again when it
        changes): its steps read the cycle they run in from the plan."""
        assigned, wanted = self._assignments(definition)
        plan = Plan(definition)
        plan.readings = frozenset(name for pollster, _, _ in assigned
                                  for name in pollster.reads)
        steps = []
        if definition.resources:
            def share_listed():
                found = plan.found
                found['static'] = self._share(definition.resources, True)
            steps.append(supervised.Step('resources', share_listed))
        for name in wanted:
            steps.append(supervised.Step(f'discovery {name}',
                                         self._discover_call(name, plan)))
        # {(group, its maker, needs): its pollsters}, in the order of the
        # first of each: pollsters of one group name but another maker
        # are not of the same family. A pollster without a group makes a
        # step of its own.
        grouped = {}
        for pollster, needs, key in assigned:
            group = pollster.step_group
            maker = getattr(pollster.get_group_samples, '__func__',
                            pollster.get_group_samples)
            grouped.setdefault(
                (group or key, maker if group else None, tuple(needs)),
                []).append((pollster, key))
        for (group, _, needs), members in grouped.items():
            if len(members) == 1:
                [(pollster, key)] = members
                steps.append(supervised.Step(
                    key, self._poll_call(pollster, needs, plan)))
            else:
                meters = ', '.join(p.meter for p, _ in members)
                steps.append(self._group_step(
                    f'pollsters {meters} (group {group})', members, needs,
                    plan))
        plan.steps = steps
        return plan

    def _discover_call(self, entry, plan):
        name, param = split_discovery(entry)

        def call():
            context, found = plan.context, plan.found
            plugin = self.manager.discoveries.get(name)
            if plugin is None:
                raise LookupError(f'no discovery plugin {name!r} in '
                                  f'{base.DISCOVER_NAMESPACE}')
            resources = plugin.discover(context, param)
            found[entry] = self._share(resources, plugin.partitioned)
        return call

    def _group_step(self, key, members, needs, plan):
        """The step running ``members`` ([(pollster, key)]) on the
        resources of ``needs``: through the group's ``get_group_samples``
        when it has one, else one after the other; those failing are
        listed in the step's ``failed``."""
        step = supervised.Step(key, None)
        resources_of = self._resources_call(needs, plan)
        make_group_samples = members[0][0].get_group_samples
        if make_group_samples is not None:
            pollsters = [pollster for pollster, _ in members]
            key_of = dict(members)

            def call_group():
                resources = resources_of()
                if not resources:
                    return []
                failed = []
                samples = make_group_samples(pollsters, plan.context,
                                             plan.cache, resources, failed)
                if failed:
                    step.failed = [(key_of[pollster], exc)
                                   for pollster, exc in failed]
                return samples
            step.call = call_group
            return step

        def call():
            resources = resources_of()
            if not resources:
                return []
            context, cache = plan.context, plan.cache
            generation = self.steps.generation
            samples = []
            for pollster, member in members:
                if self.steps.generation != generation:
                    # Given up: the pollsters left are not this thread's
                    # to run.
                    break
                try:
                    made = as_list(pollster.get_samples(context, cache,
                                                        resources))
                except Exception as exc:
                    if step.failed is None:
                        step.failed = []
                    step.failed.append((member, exc))
                    continue
                samples.extend(made)
            return samples
        step.call = call
        return step

    def _resources_call(self, needs, plan):
        """A function giving the cycle's resources of ``needs`` (a new
        list), or raising DiscoveryUnavailableError."""
        if len(needs) == 1:
            [need] = needs

            def resources():
                try:
                    return list(plan.found[need])
                except KeyError:
                    raise DiscoveryUnavailableError(need) from None
            return resources

        def resources():
            found = plan.found
            missing = [n for n in needs if n not in found]
            if missing:
                raise DiscoveryUnavailableError(', '.join(missing))
            listed = []
            for name in needs:
                listed.extend(found[name])
            return listed
        return resources

    def _poll_call(self, pollster, needs, plan):
        resources_of = self._resources_call(needs, plan)

        def call():
            resources = resources_of()
            if not resources:
                return []
            return as_list(pollster.get_samples(plan.context, plan.cache,
                                                resources))
        return call

    def _collect(self, steps):
        """The samples of the cycle's steps (which then let go of them and
        of the cycle's cache; only pollsters' steps have a result);
        failures reported."""
        samples = []
        for step in steps:
            if step.error is not None:
                self._report(step.key, step.error)
            elif step.result:
                samples.extend(step.result)
                step.result = None
            if step.failed:
                for key, error in step.failed:
                    self._report(key, error)
                step.failed = None
        plan = self._planned
        if plan is not None and plan.steps is steps:
            plan.context = plan.cache = plan.found = None
        return samples

    def _report(self, key, error):
        """Log and count the failure ``error`` of the step or pollster
        ``key``."""
        if isinstance(error, DiscoveryUnavailableError):
            LOG.debug('Polling source %s: %s skipped, discovery %s failed',
                      self.name, key, error)
            return
        if isinstance(error, supervised.StepTimeoutError):
            reason = 'timeout'
            LOG.error('Polling source %s: %s timed out after %g s and is '
                      'skipped this cycle', self.name, key,
                      self.steps.timeout)
        elif isinstance(error, supervised.StillHungError):
            reason = 'hung'
            LOG.warning('Polling source %s: %s skipped: still running '
                        'since it timed out', self.name, key)
        else:
            reason = 'error'
            LOG.error('Polling source %s: %s failed and is skipped this '
                      'cycle: %s', self.name, key,
                      delivery.one_line(error))
            LOG.debug('Polling failure', exc_info=error)
        metrics.pollster_failed(key, reason)
