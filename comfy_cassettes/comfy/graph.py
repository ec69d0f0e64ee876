"""ComfyUI's graph rules: links, structure, execution order and cache signatures."""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .nodes import NEVER_CACHED
from .protocol import KeptEncoder

# ComfyUI puts IS_CHANGED's answer in a node's cache key; for NEVER_CACHED classes that answer is new each prompt.
_CHANGED = itertools.count()


def is_link(value: Any) -> bool:
    """comfy_execution.graph_utils.is_link: an input wired to ``[source node id, output slot]`` (slot int or float)."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], (int, float))
    )


def structure(workflow: Mapping[str, Any]) -> str:
    """A key equal for workflows with the same node ids, classes and links (values ignored)."""
    shape = {}
    for node_id, node in workflow.items():
        inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
        # isinstance first: most inputs are values, and it spares them the call
        links = sorted([(k, v[0], v[1]) for k, v in inputs.items() if isinstance(v, list) and is_link(v)])
        shape[str(node_id)] = [node.get("class_type") if isinstance(node, dict) else None, links]
    return _SHAPE_ENCODER.dumps(shape)


# json.dumps(..., sort_keys=True) without its per-call setup: every POST /prompt keys its graph here.
_SHAPE_ENCODER = KeptEncoder(sort_keys=True)


def node_roles(workflow: Mapping[str, Any]) -> dict[str, str]:
    """Each node's role in the graph whatever the node ids are: its class and, recursively, what feeds each input
    (values ignored). Two workflows that differ only in their ids (``"3"`` against ComfyScript's
    ``"KSampler.0"``) give their matching nodes the same roles; nodes with the same role are numbered in the
    workflow's order."""
    roles: dict[str, str] = {}

    def role(node_id: str, seen: frozenset[str]) -> str:
        if node_id in roles:
            return roles[node_id]
        node = workflow.get(node_id)
        if not isinstance(node, dict) or node_id in seen:
            return "?"
        feeds = sorted((key, role(value[0], seen | {node_id}), value[1]) for key, value in (node.get("inputs") or {}).items()
                       if is_link(value))
        made = hashlib.sha1(json.dumps([node.get("class_type"), feeds], default=str).encode()).hexdigest()[:16]
        roles[node_id] = made
        return made

    numbered: dict[str, str] = {}
    count: dict[str, int] = {}
    for node_id in workflow:
        made = role(str(node_id), frozenset())
        count[made] = count.get(made, -1) + 1
        numbered[str(node_id)] = f"{made}.{count[made]}"
    return numbered


def signatures(workflow: Mapping[str, Any], shape: str | None = None) -> dict[str, str]:
    """Each node's cache signature: its class and values plus its ancestors' signatures, like ComfyUI's cache key.

    A signature is a digest, so a node's key costs the same at any depth (an ancestor's key is never escaped
    again inside its descendants'), and the walk is iterative, so a long chain needs no deep recursion. A link
    to a node that is absent, or that closes a cycle, counts as ``missing:<id>``. ``shape``, the workflow's
    :func:`structure` when known: the walk depends on it alone, so it is made once per structure, with each
    node's text ready to fill in (:class:`_Step`).
    """
    walk = _WALKS.get(shape) if shape is not None else None
    if walk is not None:
        done: dict[str, str] = {}
        for step in walk:
            key = step.sign(workflow, done)
            if key is not None:
                done[step.node_id] = key
        if len(done) == len(workflow):
            return done
    done = _walked(workflow)
    if shape is not None and len(done) == len(workflow) <= _WALKS_UP_TO_NODES and _resolved(workflow, done):
        if len(_WALKS) >= _WALKS_KEPT:
            _WALKS.pop(next(iter(_WALKS)))  # the oldest: a few graphs are the common case
        _WALKS[shape] = tuple(_Step(node_id, workflow[node_id]) for node_id in done)
    return done


class _Step:
    """One node of a kept walk: its key's text made ready for the inputs it had when the walk was made (a structure
    fixes the classes and links, not the names of the values), so that a node with the same inputs is signed with
    one ``%``: each value's repr, each link's source key. Any other node is signed as :func:`_signature` signs it,
    which gives the same key."""

    __slots__ = ("node_id", "class_type", "count", "values_of", "links", "form", "changes")

    def __init__(self, node_id: str, node: Mapping[str, Any]) -> None:
        self.node_id = node_id
        self.class_type = node.get("class_type")
        inputs = node.get("inputs", {})
        names = sorted(inputs)
        self.count = len(names)
        self.values_of = _getter(names)
        # (position, source node) of each link, whose place in the text takes the source's key.
        self.links = tuple((i, inputs[name][0]) for i, name in enumerate(names) if is_link(inputs[name]))
        linked = dict(self.links)
        slots = [f"L%s#{inputs[name][1]!r}" if i in linked else "%r" for i, name in enumerate(names)]
        terms = [_term(term).replace("%", "%%") for term in (self.class_type, *names)]
        self.form = ";".join([terms[0], *(f"{name}={slot}" for name, slot in zip(terms[1:], slots))])
        self.changes = self.class_type in NEVER_CACHED

    def sign(self, workflow: Mapping[str, Any], done: Mapping[str, str]) -> str | None:
        """The node's key in ``workflow`` (of the walk's structure), None when it is no node."""
        node = workflow.get(self.node_id)
        if not isinstance(node, dict):
            return None
        inputs = node.get("inputs", {})
        values: Any = None
        if type(inputs) is dict and len(inputs) == self.count:
            try:
                values = self.values_of(inputs)  # every name the step has, as many as it has: the same names
                if self.links:
                    values = list(values)
                    for position, source in self.links:
                        values[position] = done[source]
            except KeyError:
                values = None
        kinds = set(map(type, values)) if values is not None else None
        if kinds is None or not kinds <= _REPR_TYPES:
            return _signature(self.class_type, inputs, done)
        text = self.form % (tuple(map(_equal, values)) if kinds & _MERGED_TYPES else tuple(values))  # (_signature's)
        if self.changes:
            text += f";changed {next(_CHANGED)}"
        return _digest(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


# An order signatures' walk signs a structure's nodes in, every link's source before the link: kept only for a
# graph without a missing link or a cycle, whose keys any such order gives (which link closes a cycle depends on
# the inputs' order, which a structure leaves out). A bounded few, of graphs whose key is cheap to keep.
_WALKS: dict[str, tuple[_Step, ...]] = {}
_WALKS_KEPT = 64
_WALKS_UP_TO_NODES = 256


def _walked(workflow: Mapping[str, Any]) -> dict[str, str]:
    """:func:`signatures` by walking the graph, each node signed once its ancestors are."""
    done: dict[str, str] = {}
    for root in workflow:
        root = str(root)
        node = workflow.get(root)
        if root in done or not isinstance(node, dict):
            continue
        inputs = node.get("inputs", {})
        for value in inputs.values():
            if isinstance(value, list) and is_link(value) and value[0] not in done:
                break
        else:
            done[root] = _signature(node.get("class_type"), inputs, done)  # its ancestors' keys are known: no walk
            continue
        stack, on_path = [(root, False)], set[str]()
        while stack:
            node_id, expanded = stack.pop()
            node = workflow.get(node_id)
            if node_id in done or not isinstance(node, dict):
                continue
            inputs = node.get("inputs", {})
            if expanded:
                on_path.discard(node_id)
                done[node_id] = _signature(node.get("class_type"), inputs, done)
            elif node_id not in on_path:
                on_path.add(node_id)
                stack.append((node_id, True))
                stack.extend((value[0], False) for value in inputs.values()
                             if is_link(value) and value[0] not in done and value[0] not in on_path)
    return done


def _resolved(workflow: Mapping[str, Any], order: Iterable[str]) -> bool:
    """Whether every link in ``workflow`` comes from a node earlier in ``order``."""
    earlier: set[str] = set()
    for node_id in order:
        if any(is_link(value) and value[0] not in earlier for value in workflow[node_id].get("inputs", {}).values()):
            return False
        earlier.add(node_id)
    return True


# json.dumps(..., sort_keys=True, default=str) made once: dumps builds a new encoder per call given options.
_KEY_ENCODER = json.JSONEncoder(sort_keys=True, default=str)
_digest = hashlib.blake2b
# Values written as their repr: each type's repr tells its values apart and apart from the other types' ('1'
# from 1), as their JSON does, at a fraction of an encoder's cost; any other value is written as JSON. Numbers
# Python finds equal are first made one (_equal): ComfyUI's key (caching.py to_hashable) keeps 1, 1.0 and True,
# which are equal with equal hashes, so one key.
_REPR_TYPES = frozenset({str, int, float, bool, type(None)})
_MERGED_TYPES = frozenset({float, bool})
# By (class, input names in the node's order): a getter of the values in name order, and the texts they fill in (_form).
_Form = tuple[Callable[[Mapping[str, Any]], tuple[Any, ...]], str, str]
_FORMS: dict[tuple[str, tuple[Any, ...]], _Form] = {}
_FORMS_KEPT = 1024


def _signature(class_type: Any, inputs: Mapping[str, Any], done: Mapping[str, str]) -> str:
    """One node's key from its class, its values and its inputs' keys (each link as ``L<key>#<slot>``); a
    NEVER_CACHED class's key also holds a fresh count, as ComfyUI's holds IS_CHANGED's new answer.

    The text hashed is the class and each input in name order, every part self-delimiting (a repr, or a mark
    that no repr starts with: ``L`` and a digest, ``M`` and a missing node's id, ``J`` and a JSON text), so that
    different nodes never give the same text. Its form is kept per class and input names, so a node's text is one
    ``%`` of its values."""
    names = tuple(inputs)
    known = _FORMS.get((class_type, names)) if type(class_type) is str else None
    values_of, form, written = known if known is not None else _form(class_type, names)
    values = values_of(inputs)
    kinds = set(map(type, values))
    if kinds <= _REPR_TYPES:
        text = form % (tuple(map(_equal, values)) if kinds & _MERGED_TYPES else values)
    else:  # a link or a JSON value: its mark, and every other value's repr
        text = written % tuple([repr(_equal(value)) if type(value) in _REPR_TYPES else _mark(value, done) for value in values])
    if class_type in NEVER_CACHED:
        text += f";changed {next(_CHANGED)}"
    return _digest(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _form(class_type: Any, names: tuple[Any, ...]) -> _Form:
    """How :func:`_signature` writes a node of ``class_type`` with inputs ``names``: a getter of its values in name
    order, the ``%`` text their reprs fill in, and the same text to fill with texts (kept for a class given by name)."""
    ordered = sorted(names)
    values_of = _getter(ordered)
    terms = [_term(term).replace("%", "%%") for term in (class_type, *ordered)]
    found = values_of, _joined(terms, "%r"), _joined(terms, "%s")
    if type(class_type) is str:
        if len(_FORMS) >= _FORMS_KEPT:
            _FORMS.clear()  # (a bounded few: the classes a server sees, with their inputs)
        _FORMS[(class_type, names)] = found
    return found


def _getter(names: Sequence[Any]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A getter of the values of ``names``, in their order, as a tuple."""
    if len(names) > 1:
        return operator.itemgetter(*names)
    if names:  # itemgetter of one name gives the value itself, and of none is refused
        name = names[0]
        return lambda inputs: (inputs[name],)
    return lambda inputs: ()


def _joined(terms: Sequence[str], slot: str) -> str:
    """The class's term, then each input's name and ``slot`` for its value."""
    return ";".join([terms[0], *(f"{name}={slot}" for name in terms[1:])])


def _mark(value: Any, done: Mapping[str, str]) -> str:
    """What a node's key holds for a value whose repr does not tell it apart: a link, or a JSON value."""
    if is_link(value):
        source = done.get(value[0])
        return f"L{source}#{value[1]!r}" if source is not None else f"M{value[0]!r}#{value[1]!r}"
    return f"J{_KEY_ENCODER.encode(_equal(value))}"


def _equal(value: Any) -> Any:
    """``value`` with every bool and whole float made the int Python finds it equal to (True == 1 == 1.0, and
    so in ComfyUI's cache key), inside lists and objects too."""
    kind = type(value)
    if kind is bool or kind is float and value.is_integer():
        return int(value)
    if kind is list:
        return [_equal(item) for item in value]
    if kind is dict:
        return {key: _equal(item) for key, item in value.items()}
    return value


def _term(value: Any) -> str:
    return f"S{value!r}" if type(value) in _REPR_TYPES else f"J{_KEY_ENCODER.encode(value)}"


def execution_order(
    prompt: Mapping[str, Any],
    outputs: Sequence[str],
    *,
    object_info: Mapping[str, Any] | None = None,
) -> list[str]:
    """Node ids in the order ComfyUI runs a validated prompt with nothing cached.

    Mirrors ComfyUI's ExecutionList: add each output with its ancestors, then repeatedly pick among the
    ready nodes an output node, else a node feeding an output, else one two links from an output, else
    the first. Output nodes come from ``object_info`` when given, else are the ids in ``outputs``.

    >>> execution_order({"1": {"class_type": "EmptyImage", "inputs": {}},
    ...                  "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}, ["2"])
    ['1', '2']
    """
    wanted = set(outputs)

    def is_output(node_id: str) -> bool:
        if object_info is None:
            return node_id in wanted
        return object_info.get(prompt[node_id]["class_type"], {}).get("output_node") is True

    execution = _ExecutionList(prompt, is_output)
    for output in outputs:
        execution.add_node(output)
    return execution.order()


class _ExecutionList:
    """ComfyUI's ExecutionList (comfy_execution/graph.py): the pending nodes, what blocks each, and the pick rule."""

    def __init__(self, prompt: Mapping[str, Any], is_output: Callable[[str], bool]) -> None:
        self.prompt = prompt
        self.is_output = is_output
        self.pending: dict[str, None] = {}
        self.blockers: dict[str, set[str]] = {}
        self.blocking: dict[str, dict[str, None]] = {}

    def add_node(self, start: str) -> None:
        """``start`` and its ancestors, each blocked by the nodes it takes a link from."""
        stack, links = [start], []
        while stack:
            node_id = stack.pop()
            if node_id in self.pending:
                continue
            self.pending[node_id] = None
            self.blockers[node_id] = set()
            self.blocking[node_id] = {}
            for value in self.prompt[node_id]["inputs"].values():
                if is_link(value):
                    stack.append(value[0])
                    links.append((value[0], node_id))
        for source, target in links:
            self.blocking[source][target] = None
            self.blockers[target].add(source)

    def rank(self, node_id: str) -> int:
        """Which of pick's rules takes the node once it is ready (an output, a node feeding one, one two links from
        one, any): it does not change while the node waits, since a node's targets run after it."""
        blocking, is_output = self.blocking, self.is_output
        if is_output(node_id):
            return 0
        if any(is_output(b) for b in blocking[node_id]):
            return 1
        if any(is_output(b1) for b in blocking[node_id] for b1 in blocking[b]):
            return 2
        return 3

    def order(self) -> list[str]:
        """Run the list to the end: the nodes in the order ComfyUI picks them (up to a cycle, where it stops)."""
        # The ready nodes of each rank in a heap by their place in `pending`: ComfyUI's pick scans the ready list in
        # that order, so the first of the best rank is its choice, found without rescanning every pending node.
        place = {node_id: i for i, node_id in enumerate(self.pending)}
        ready: list[list[tuple[int, str]]] = [[], [], [], []]
        for node_id in self.pending:
            if not self.blockers[node_id]:
                heapq.heappush(ready[self.rank(node_id)], (place[node_id], node_id))
        order: list[str] = []
        while self.pending:
            heap = next((h for h in ready if h), None)
            if heap is None:  # a cycle: ComfyUI stops here with a DependencyCycleError
                break
            node_id = heapq.heappop(heap)[1]
            order.append(node_id)
            del self.pending[node_id]
            for blocked in self.blocking.pop(node_id):
                self.blockers[blocked].discard(node_id)
                if not self.blockers[blocked]:
                    heapq.heappush(ready[self.rank(blocked)], (place[blocked], blocked))
        return order
