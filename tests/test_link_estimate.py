"""What the responses say about the link, and the parts a load cuts from it: the rules, on numbers given."""

from __future__ import annotations

from fsspec_s3reader.transport.link_estimate import (
    FIRST_PART,
    LARGEST_PART,
    PARTS_IN_FLIGHT,
    SMALLEST_PART,
    LinkEstimate,
    LinkSample,
    fit_to_link,
    is_far,
    part_fetched_ahead,
    part_for_a_read,
)

MIB = 1024 * 1024
MB = 1_000_000


def test_an_estimate_without_responses_knows_nothing() -> None:
    assert LinkEstimate().sample() == LinkSample(None, None, 0)


def test_the_first_response_counts_only_until_another_arrives() -> None:
    link = LinkEstimate()
    link.record(0.090, 16_000, 0.001)  # it also paid for setting up the client
    assert link.sample().first_byte_latency == 0.090
    link.record(0.025, 16_000, 0.001)
    assert link.sample().first_byte_latency == 0.025


def test_the_latency_is_the_shortest_recent_wait_so_queueing_does_not_count() -> None:
    link = LinkEstimate()
    for wait in (0.5, 0.021, 0.060, 0.020, 0.045):
        link.record(wait, 1000, 0.001)
    assert link.sample().first_byte_latency == 0.020


def test_the_throughput_is_the_median_of_the_first_long_bodies_and_short_ones_do_not_count() -> None:
    link = LinkEstimate()
    link.record(0.02, 8 * MIB, 8 * MIB / (80 * MB))
    link.record(0.02, 1000, 0.000001)  # a short body: far too fast to mean anything
    link.record(0.02, 8 * MIB, 8 * MIB / (90 * MB))
    link.record(0.02, 8 * MIB, 8 * MIB / (100 * MB))
    link.record(0.02, 8 * MIB, 8 * MIB / (95 * MB))
    link.record(0.02, 8 * MIB, 8 * MIB / (10 * MB))  # after the first four: no longer counted
    assert round(link.sample().connection_throughput or 0) == round(92.5 * MB)
    assert link.sample().responses == 6


def test_parts_start_at_the_first_size_until_a_response_has_timed_the_link() -> None:
    plan = fit_to_link(LinkSample(None, None, 0), budget=256 * MIB, readers=2)
    assert plan.part_size == FIRST_PART
    assert plan.parts_in_flight == PARTS_IN_FLIGHT


def test_a_part_takes_four_first_byte_waits_to_arrive_when_memory_allows() -> None:
    # 20 ms at 90 MB/s: 7.2 MB; 50 ms: 18 MB (whole MiB, rounded down)
    small_budget = 64 * MIB  # its share per part is 2.9 MiB: the link's rule decides
    assert fit_to_link(LinkSample(0.020, 90 * MB, 9), budget=small_budget, readers=2).part_size == 6 * MIB
    assert fit_to_link(LinkSample(0.050, 90 * MB, 9), budget=small_budget, readers=2).part_size == 17 * MIB


def test_a_roomy_budget_makes_parts_longer_and_requests_fewer() -> None:
    fast_link = LinkSample(0.001, 500 * MB, 9)  # 2 MB would do for the link
    assert fit_to_link(fast_link, budget=256 * MIB, readers=2).part_size == 11 * MIB  # 256 MiB / (16 + 3 x 2)
    assert fit_to_link(fast_link, budget=64 * MIB, readers=2).part_size == 2 * MIB


def test_parts_stay_within_the_smallest_and_largest() -> None:
    assert fit_to_link(LinkSample(0.0001, 1 * MB, 9), budget=0, readers=1).part_size == SMALLEST_PART
    assert fit_to_link(LinkSample(1.0, 1000 * MB, 9), budget=2**40, readers=1).part_size == LARGEST_PART


LINK = LinkSample(first_byte_latency=0.020, connection_throughput=90e6, responses=8)


def test_a_read_waited_for_is_cut_into_parts_of_about_what_a_connection_carries_per_wait() -> None:
    # 2.5 MB at 20 ms and 90 MB/s: 1.8 MB per wait, but no part under 2 MiB -> two even parts
    assert part_for_a_read(LINK, 2_535_980, largest=8 * MIB, parts_in_flight=8) == 1_267_990
    # 10 MiB -> five parts of 2 MiB, side by side instead of one 8 MiB part and a 2 MiB one
    assert part_for_a_read(LINK, 10 * MIB, largest=8 * MIB, parts_in_flight=8) == 2 * MIB
    # 33 MB (one of pyarrow's reads of a whole row group) -> as many parts as may be in flight, not four of 8 MiB
    assert part_for_a_read(LINK, 32 * MIB, largest=8 * MIB, parts_in_flight=8) == 4 * MIB


def test_a_read_keeps_the_configured_parts_where_cutting_would_not_pay() -> None:
    unknown = LinkSample(first_byte_latency=None, connection_throughput=None, responses=0)
    assert part_for_a_read(unknown, 10 * MIB, largest=8 * MIB, parts_in_flight=8) == 8 * MIB
    assert part_for_a_read(LINK, 2 * MIB, largest=8 * MIB, parts_in_flight=8) == 8 * MIB  # one part anyway
    # a long stream has more parts than fit in flight: each connection is busy with long parts anyway
    assert part_for_a_read(LINK, 256 * MIB, largest=8 * MIB, parts_in_flight=8) == 8 * MIB
    # a near server (a first byte within a few ms): more requests only cost more work per byte, long read or short
    near = LinkSample(first_byte_latency=0.003, connection_throughput=105e6, responses=8)
    assert part_for_a_read(near, 33 * MIB, largest=8 * MIB, parts_in_flight=8) == 8 * MIB
    assert part_for_a_read(near, 2_535_980, largest=8 * MIB, parts_in_flight=8) == 8 * MIB
    # never longer than part_size, however the link looks
    assert part_for_a_read(LINK, 10 * MIB, largest=64 * 1024, parts_in_flight=8) == 64 * 1024


def test_a_stream_fetched_ahead_goes_in_long_parts_to_a_near_server_and_in_part_size_to_a_far_one() -> None:
    near = LinkSample(first_byte_latency=0.003, connection_throughput=105e6, responses=8)
    assert part_fetched_ahead(near, largest=8 * MIB) == 32 * MIB  # the server's work is per request
    assert part_fetched_ahead(near, largest=64 * MIB) == 64 * MIB
    assert part_fetched_ahead(LINK, largest=8 * MIB) == 8 * MIB  # several in flight fill the link
    assert part_fetched_ahead(LinkSample(None, None, 0), largest=8 * MIB) == 8 * MIB  # not timed yet


def test_a_filesystems_estimate_times_the_shorter_bodies_of_reads() -> None:
    estimate = LinkEstimate(smallest_timed_body=MIB)
    estimate.record(0.02, 2 * MIB, 0.02)
    assert estimate.sample().connection_throughput == 2 * MIB / 0.02


def test_a_server_is_far_from_ten_milliseconds_to_the_first_byte_and_near_until_timed() -> None:
    assert not is_far(LinkSample(None, None, 0))
    assert not is_far(LinkSample(0.002, 500 * MB, 8))  # the same host or rack
    assert is_far(LinkSample(0.020, 90 * MB, 8))  # S3
