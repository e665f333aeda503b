-- Q9 (product type profit): supply (part, supplier, partsupp, nation) x logistics (lineitem) x retail (orders).
-- Rewrites: party-qualified names; the FROM subquery is flattened; the key equalities are written as the
-- equivalent set ps_suppkey = s_suppkey, ps_partkey = p_partkey (local at supply) and
-- l_suppkey = ps_suppkey, l_partkey = ps_partkey (one two-column cross-party join) instead of
-- s_suppkey = l_suppkey, p_partkey = l_partkey (the engine does not derive the transitive equalities,
-- and without them supply's fragment would be a cross product).
select n_name as nation, extract(year from o_orderdate) as o_year,
       sum(l_extendedprice * (1 - l_discount) - ps_supplycost * l_quantity) as sum_profit
from supply.part, supply.supplier, logistics.lineitem, supply.partsupp, retail.orders, supply.nation
where ps_suppkey = s_suppkey and ps_partkey = p_partkey
  and l_suppkey = ps_suppkey and l_partkey = ps_partkey
  and o_orderkey = l_orderkey and s_nationkey = n_nationkey and p_name like '%green%'
group by n_name, extract(year from o_orderdate)
order by nation, o_year desc;
