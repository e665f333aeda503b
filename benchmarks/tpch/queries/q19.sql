-- Q19 (discounted revenue): logistics (lineitem) x supply (part).
-- Rewrites: party-qualified names; the conjuncts common to the three OR branches (p_partkey = l_partkey,
-- l_shipmode IN (...), l_shipinstruct = ...) are factored out of the OR (a logical equivalence), which
-- gives the engine its equi-join condition and lets logistics filter its own rows.
select sum(l_extendedprice * (1 - l_discount)) as revenue
from logistics.lineitem, supply.part
where p_partkey = l_partkey and l_shipmode in ('AIR', 'AIR REG') and l_shipinstruct = 'DELIVER IN PERSON'
  and ((p_brand = 'Brand#12' and p_container in ('SM CASE', 'SM BOX', 'SM PACK', 'SM PKG')
        and l_quantity >= 1 and l_quantity <= 1 + 10 and p_size between 1 and 5)
    or (p_brand = 'Brand#23' and p_container in ('MED BAG', 'MED BOX', 'MED PKG', 'MED PACK')
        and l_quantity >= 10 and l_quantity <= 10 + 10 and p_size between 1 and 10)
    or (p_brand = 'Brand#34' and p_container in ('LG CASE', 'LG BOX', 'LG PACK', 'LG PKG')
        and l_quantity >= 20 and l_quantity <= 20 + 10 and p_size between 1 and 15));
