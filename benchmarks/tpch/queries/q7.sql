-- Q7 (volume shipping): supply (supplier, nation n1) x logistics (lineitem) x retail (orders, customer, nation n2).
-- Rewrites: party-qualified names (n1 is supply's nation, n2 retail's); the FROM subquery is flattened
-- (it only renames columns); GROUP BY repeats the expressions instead of the output aliases; the two
-- single-party filters n1.n_name IN (...) and n2.n_name IN (...) are implied by the OR and are added so
-- each party filters its own rows (the engine does not infer them yet).
select n1.n_name as supp_nation, n2.n_name as cust_nation, extract(year from l_shipdate) as l_year,
       sum(l_extendedprice * (1 - l_discount)) as revenue
from supply.supplier, logistics.lineitem, retail.orders, retail.customer, supply.nation n1, retail.nation n2
where s_suppkey = l_suppkey and o_orderkey = l_orderkey and c_custkey = o_custkey
  and s_nationkey = n1.n_nationkey and c_nationkey = n2.n_nationkey
  and ((n1.n_name = 'FRANCE' and n2.n_name = 'GERMANY') or (n1.n_name = 'GERMANY' and n2.n_name = 'FRANCE'))
  and n1.n_name in ('FRANCE', 'GERMANY') and n2.n_name in ('FRANCE', 'GERMANY')
  and l_shipdate between date '1995-01-01' and date '1996-12-31'
group by n1.n_name, n2.n_name, extract(year from l_shipdate)
order by supp_nation, cust_nation, l_year;
