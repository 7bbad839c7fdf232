"""Memory planners: naive and greedy-by-size against hand cases and brute-force bounds."""

from hypothesis import given, settings, strategies as st

from sdsim.cost.memory import Live, greedy_buffers, greedy_by_size, naive, peak_live


def test_hand_example():
    # a(100) live 0-1, b(60) live 1-2, c(100) live 2-3, d(50) live 3-4
    ts = [Live("a", 100, 0, 1), Live("b", 60, 1, 2), Live("c", 100, 2, 3), Live("d", 50, 3, 4)]
    assert naive(ts) == 310
    # largest first: a gets buffer 1 (100); c is disjoint from a -> buffer 1; b overlaps a ->
    # buffer 2 (60); d overlaps c but not b -> buffer 2 (60 >= 50). Total 160.
    assert greedy_by_size(ts) == 160
    assert peak_live(ts) == 160


def test_disjoint_tensors_share_one_buffer():
    ts = [Live(i, 10 * (i + 1), i, i) for i in range(5)]
    assert greedy_by_size(ts) == 50 and naive(ts) == 150


lives = st.lists(st.tuples(st.integers(1, 1000), st.integers(0, 30), st.integers(0, 10)),
                 min_size=1, max_size=25)


@settings(max_examples=150, deadline=None)
@given(lives)
def test_greedy_between_peak_live_and_naive(spec):
    ts = [Live(i, s, a, a + d) for i, (s, a, d) in enumerate(spec)]
    g = greedy_by_size(ts)
    assert peak_live(ts) <= g <= naive(ts)


@settings(max_examples=100, deadline=None)
@given(lives)
def test_peak_live_matches_step_by_step_sum(spec):
    ts = [Live(i, s, a, a + d) for i, (s, a, d) in enumerate(spec)]
    brute = max(sum(t.size for t in ts if t.first <= step <= t.last) for step in range(0, 45))
    assert peak_live(ts) == brute


@settings(max_examples=150, deadline=None)
@given(lives)
def test_greedy_plan_is_valid(spec):
    ts = [Live(i, s, a, a + d) for i, (s, a, d) in enumerate(spec)]
    plan = greedy_buffers(ts)
    placed = [t.key for _, members in plan for t in members]
    assert sorted(placed) == sorted(t.key for t in ts)  # every tensor exactly once
    for size, members in plan:
        assert all(t.size <= size for t in members)
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                assert a.last < b.first or b.last < a.first  # never live at the same step
